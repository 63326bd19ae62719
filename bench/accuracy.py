"""Accuracy table: every method under one budget and seed list, beside its published numbers.

    python -m bench.accuracy --dataset=amazon-beauty --data_path=../shared/datasets \
        [--epochs=200] [--raft_epochs=30] [--seeds=2020,2021] [--runs=SASRec,DuoRec] [--key=value ...]

Each run goes through ``run_recbole_rag`` (RecBole's data, split and evaluator). A finished run's
result is a JSON file under ``results/<dataset>-accuracy/`` named by label, seed and a hash of its
settings, so a rerun with the same settings skips it; its checkpoints and its log (``.log``, every
attempt appended) lie beside it under the same name, and a run stopped midway continues from its
last epoch's checkpoint (recbole_rag.trainer.safe_checkpoint) when the command is run again
(it needs the ``-last.pth`` and the best ``.pth`` beside it: keep both to carry a run elsewhere)
(its settings, written at its start as ``.settings.json``, find it again under the same settings
spelt otherwise, e.g. ``--data_path`` relative or absolute).
Writes ``results/<dataset>-accuracy.md`` and ``.csv``: the mean (and sample standard deviation,
with several seeds) of each metric. The hash covers the plug-in's YAML defaults too: change one
and the runs it touches run again.
"""

import glob
import hashlib
import json
import logging
import os
import statistics
import sys
from dataclasses import dataclass, field

import yaml
from recbole.utils.logger import RemoveColorFilter

from bench.report import table_parser, write_report
from recbole_rag import run_recbole_rag
from recbole_rag.checkpoint import drop_training_state
from recbole_rag.cli import parse_overrides
from recbole_rag.config import presets, property_files
from recbole_rag.errors import ConfigError, UnknownModelError, command
from recbole_rag.files import atomic_path
from recbole_rag.pipeline import regenerate, regenerated_run, regenerator_key
from recbole_rag.regeneration.writer import ADDED_REGEN_KEYS, REGEN_KEYS
from recbole_rag.registry import built_class, get_model
from recbole_rag.significance import (
    TESTED,
    compare_runs,
    format_p,
    load_per_user,
    mean_over_runs,
    per_user_path,
    save_per_user,
)

METRICS = ["recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20"]


# The row whose checkpoint starts a regenerator's item table (the reference's start), by default.
ITEM_TABLE_ROW = "SASRec"


@dataclass(frozen=True)
class Run:
    """One row: ``model`` trained with ``overrides``; ``backbone`` names an earlier row whose
    checkpoint it starts from (``pretrained_path``), as ``M@B`` in ``--compare``; ``regenerated``
    trains on ``<dataset>-regen`` (DR4SR, written once, reused while its manifest matches);
    ``"control"`` on its control (the original rows plus as many again, nothing new);
    ``item_table`` names the row whose checkpoint starts its regenerator's item table; ``base``
    the row its gain is tested against, when that is not ``base_of``'s choice."""

    label: str
    model: str
    overrides: dict = field(default_factory=dict)
    backbone: str = None
    regenerated: bool | str = False
    item_table: str = ITEM_TABLE_ROW
    base: str = None


def base_of(run):
    """The row whose per-user results a row is tested against in the table: ``base``, else its
    backbone (RAFT against the model it starts from), else, on regenerated data, its model on the
    original data (e.g. DuoRec+regen against DuoRec); None for a row of its own."""
    return run.base or run.backbone or (run.model if run.regenerated else None)


def preset(name):
    """A shipped preset's settings (properties/preset/), as a row's overrides."""
    with open(presets()[name], encoding="utf-8") as f:
        return yaml.safe_load(f)


# The table, in order; adding a method is one line here. A model this build lacks is skipped
# with a note. The DR4SR rows are the three-stage pipeline (recbole_rag.pipeline).
_PATTERN_BANK = {"memory_source": "patterns", "memory_update": False}  # a pattern bank stays patterns
_SRACL_PRESET = "SRACL(SASRec) preset sracl-authors"
RUNS = [
    Run("SASRec", "SASRec"),
    Run("DuoRec", "DuoRec"),
    Run("DuoRec (bfloat16)", "DuoRec", {"enable_amp": True}, base="DuoRec"),  # RecBole's autocast; on CPU, bfloat16
    Run("RaSeRec@SASRec", "RaSeRec", backbone="SASRec"),
    Run("RaSeRec@DuoRec", "RaSeRec", backbone="DuoRec"),
    Run("SASRec+regen", "SASRec", regenerated=True),
    Run("SASRec+regen-control", "SASRec", regenerated="control"),
    Run("SASRec+regen+DR4SR+", "SASRec", preset("dr4sr-plus"), regenerated=True),
    Run("SASRec+regen(min_len=3)", "SASRec", {"regen_min_len": 3}, regenerated=True),  # no EOS before 3 items
    # a regenerator pre-trained (and its patterns used) only on patterns of 3+ items: longer outputs learned, not forced
    Run("SASRec+regen(pattern_min_len=3)", "SASRec", {"pattern_min_len": 3}, regenerated=True),
    # the same regenerator (decoding settings do not retrain it), decoded with no EOS before 3 items
    Run(
        "SASRec+regen(pattern_min_len=3 min_len=3)",
        "SASRec",
        {"pattern_min_len": 3, "regen_min_len": 3},
        regenerated=True,
    ),
    # the reference's learning rate: cosine restarts every batch-counted period, not one annealing
    Run("SASRec+regen(lr_schedule=batch)", "SASRec", {"regen_lr_schedule": "batch"}, regenerated=True),
    # a regenerator trained over all items (no source mask), so items past the source's are learned,
    # decoded with no EOS before 3 items
    Run(
        "SASRec+regen(source_mask=False min_len=3)",
        "SASRec",
        {"regen_source_mask": False, "regen_min_len": 3},
        regenerated=True,
    ),
    Run("SASRec+regen+RAFT(pairs)", "RaSeRec", {"memory_source": "pairs"}, "SASRec+regen", True),
    Run("SASRec+regen+RAFT(patterns)", "RaSeRec", _PATTERN_BANK, "SASRec+regen", True),
    Run("SASRec+regen+DR4SR++RAFT(pairs)", "RaSeRec", {"memory_source": "pairs"}, "SASRec+regen+DR4SR+", True),
    Run("DuoRec+regen", "DuoRec", regenerated=True),
    Run("DuoRec+regen+DR4SR+", "DuoRec", preset("dr4sr-plus"), regenerated=True),
    Run("DuoRec+regen+RAFT(pairs)", "RaSeRec", {"memory_source": "pairs"}, "DuoRec+regen", True),
    Run("DuoRec+regen+RAFT(patterns)", "RaSeRec", _PATTERN_BANK, "DuoRec+regen", True),
    # SRA-CL on two backbones, each beside the same model with both contrastive terms off (the
    # backbone alone: same code, data and budget).
    Run("SASRec (SRA-CL off)", "SRACL", {"cross_weight": 0, "intra_weight": 0}),
    Run("SRACL(SASRec)", "SRACL", base="SASRec (SRA-CL off)"),
    Run("SRACL(SASRec) preset sracl-authors", "SRACL", preset("sracl-authors"), base="SASRec (SRA-CL off)"),
    # The preset's own backbone: its sequence length (20), both contrastive terms off.
    Run(
        "SASRec (SRA-CL off) length 20",
        "SRACL",
        {"cross_weight": 0, "intra_weight": 0, "MAX_ITEM_LIST_LENGTH": preset("sracl-authors")["MAX_ITEM_LIST_LENGTH"]},
    ),
    # The preset with one part at a time set back to our defaults: which part moves the result.
    *[
        Run(f"SRACL(SASRec) preset: {part}", "SRACL", {**preset("sracl-authors"), **ours}, base=_SRACL_PRESET)
        for part, ours in [
            ("cosine at 0.1", {"sim": "cos", "tau": 0.1}),
            ("memory positives", {"cross_view": "memory"}),
            ("no intra term", {"intra_weight": 0.0}),
            ("length 50", {"MAX_ITEM_LIST_LENGTH": 50}),
            ("item-mean prefixes + plain item texts", {"prefix_semantics": "items", "item_text_histories": 0}),
        ]
    ],
    # The preset with one more of the authors' parts: a forward pass of its own for the cross
    # term's anchor; exact semantic neighbours of every prefix (ours: IVF past 50,000); and all
    # of them with positions counted from the end, as their left-padded rows
    *[
        Run(f"SRACL(SASRec) preset + {part}", "SRACL", {**preset("sracl-authors"), **theirs}, base=_SRACL_PRESET)
        for part, theirs in [
            ("separate anchor", {"cross_anchor": "separate"}),
            ("exact neighbours", {"neighbour_search": "exact"}),
            ("separate anchor + exact neighbours", {"cross_anchor": "separate", "neighbour_search": "exact"}),
            (
                "separate anchor + exact neighbours + end positions",
                {"cross_anchor": "separate", "neighbour_search": "exact", "position_from": "end"},
            ),
        ]
    ],
    Run("GRU4Rec (SRA-CL off)", "SRACL", {"backbone": "GRU4Rec", "cross_weight": 0, "intra_weight": 0}),
    Run("SRACL(GRU4Rec)", "SRACL", {"backbone": "GRU4Rec"}, base="GRU4Rec (SRA-CL off)"),
    # RaSeRec's RAFT on other RecBole backbones, each beside the backbone alone (bench/any_backbone.py)
    *[
        run
        for name in ("GRU4Rec", "NARM", "LightSANs", "FEARec")
        for run in (Run(name, name), Run(f"RaSeRec@{name}", "RaSeRec", {"backbone": name}, backbone=name))
    ],
    # DR4SR under its reference code's own protocol (preset dr4sr-reference), the regenerator
    # starting from that protocol's SASRec (BCE), as the reference's shipped item table
    Run("SASRec (DR4SR protocol)", "SASRec", preset("dr4sr-reference")),
    Run(
        "SASRec+regen (DR4SR protocol)",
        "SASRec",
        preset("dr4sr-reference"),
        regenerated=True,
        item_table="SASRec (DR4SR protocol)",
        base="SASRec (DR4SR protocol)",
    ),
]
# Settings of the model a regenerated set trains, never of its regenerator (which keeps its own).
TARGET_ONLY = tuple(preset("dr4sr-reference"))

# Published test numbers on amazon-beauty (full ranking, leave-one-out): run label -> [(source,
# {metric: value})]. Only what the sources report; missing metrics stay blank.
# SRA-CL's table trains with sequences cut to 20 items, LLM-written texts and SimCSE vectors; its
# HR@20 is Recall@20 here (one held-out item per user).
_SRACL_PAPER = "SRA-CL paper (max length 20)"
# The three-stage study's Table 1 (bench/table1.py has all of it, on three datasets).
_STUDY = "three-stage study, Table 1"
PUBLISHED = {
    "amazon-beauty": {
        "SASRec": [(_STUDY, {"ndcg@10": 0.0405})],
        "DuoRec": [
            (
                "RaSeRec authors' log",
                {
                    "recall@5": 0.0541,
                    "recall@10": 0.0834,
                    "recall@20": 0.1217,
                    "ndcg@5": 0.0337,
                    "ndcg@10": 0.0431,
                    "ndcg@20": 0.0527,
                },
            ),
            (_STUDY, {"ndcg@10": 0.0452}),
            (_SRACL_PAPER, {"recall@20": 0.1224, "ndcg@10": 0.0443}),
        ],
        "RaSeRec@DuoRec": [
            (
                "RaSeRec authors' log",
                {
                    "recall@5": 0.0567,
                    "recall@10": 0.0863,
                    "recall@20": 0.1244,
                    "ndcg@5": 0.0367,
                    "ndcg@10": 0.0462,
                    "ndcg@20": 0.0558,
                },
            ),
        ],
        # the study's "+ pipeline" rows are regeneration plus RAFT with a bank of all pairs
        "SASRec+regen+RAFT(pairs)": [(_STUDY, {"ndcg@10": 0.0434})],
        "SASRec (SRA-CL off)": [(_SRACL_PAPER, {"ndcg@10": 0.0336})],
        "SRACL(SASRec)": [(_SRACL_PAPER, {"recall@20": 0.1314, "ndcg@10": 0.0469})],
        "SASRec (SRA-CL off) length 20": [(_SRACL_PAPER, {"ndcg@10": 0.0336})],
        "SRACL(SASRec) preset sracl-authors": [(_SRACL_PAPER, {"recall@20": 0.1314, "ndcg@10": 0.0469})],
        "GRU4Rec (SRA-CL off)": [(_SRACL_PAPER, {"ndcg@10": 0.0137})],
        "DuoRec+regen+RAFT(pairs)": [(_STUDY, {"ndcg@10": 0.0470})],
    },
}


def parse_seeds(text):
    try:
        seeds = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers such as 2020,2021, got {text!r}.") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds needs at least one seed and no repeats, got {text!r}.")
    return seeds


def parse_labels(text):
    """``--runs``: comma-separated row labels (a label holds no comma)."""
    return [label.strip() for label in text.split(",") if label.strip()]


def select_runs(labels, runs=RUNS, item_table_given=False):
    """The rows named in ``labels`` (all when empty), each backbone listed before its user, and
    SASRec before a row on regenerated data, whose regenerator starts from SASRec's item table
    (the reference's start) unless ``item_table_given`` (``--regen_item_embedding``)."""
    if not labels:
        return list(runs)
    by_label = {run.label: run for run in runs}
    unknown = [label for label in labels if label not in by_label]
    if unknown:
        raise ConfigError(f"Unknown run(s) {', '.join(unknown)}; the table has: {', '.join(by_label)}.")
    chosen = [by_label[label] for label in labels]
    for position, run in enumerate(chosen):
        if run.backbone and run.backbone not in labels[:position]:
            raise ConfigError(f"'{run.label}' starts from '{run.backbone}': list {run.backbone} before it in --runs.")
        own_table = "regen_item_embedding" in run.overrides or item_table_given
        if run.regenerated and not own_table and run.item_table not in labels[:position]:
            raise ConfigError(
                f"'{run.label}' regenerates from {run.item_table}'s item table: list {run.item_table} "
                "before it in --runs, or pass --regen_item_embedding=<checkpoint>."
            )
    return chosen


def available(run):
    """None if this build has the run's model, else why not."""
    try:
        get_model(run.model)
    except UnknownModelError:
        return f"model {run.model} not available in this build"
    return None


# Overrides only a row on regenerated data reads (where that data is written): left out of the
# other rows' settings, so giving them keeps those rows' stored results (e.g. SASRec's).
REGENERATED_ONLY = ("regen_data_path", *ADDED_REGEN_KEYS)


def regenerator_defaults(keys, dataset):
    """The Regenerator's YAML defaults of ``keys`` (a row on a regenerated set records the ones
    added since rows were stored: its own properties files are its model's, not the regenerator's)."""
    merged = {}
    for path in property_files("Regenerator", dataset):
        with open(path, encoding="utf-8") as f:
            merged.update(yaml.safe_load(f) or {})
    return {k: merged[k] for k in keys if k in merged}


def settings_of(run, seed, overrides, dataset):
    """What a stored result was run under: the row, seed and overrides, and the plug-in's YAML
    defaults for its model and dataset, so that a changed default is a new result, not a stale one."""
    overrides = {**overrides, **run.overrides}
    if not run.regenerated:
        overrides = {k: v for k, v in overrides.items() if k not in REGENERATED_ONLY}
    else:  # the regenerator's settings added since rows were stored, at the value this row's set uses
        overrides = {**regenerator_defaults(ADDED_REGEN_KEYS, dataset), **overrides}
    defaults = {}
    for path in property_files(built_class(run.model, overrides.get("backbone")), dataset):  # RaSeRec@X: X's too
        with open(path, encoding="utf-8") as f:
            defaults[os.path.basename(path)] = yaml.safe_load(f)
    return {
        "label": run.label,
        "model": run.model,
        "backbone": run.backbone,
        "seed": seed,
        "overrides": overrides,
        "defaults": defaults,
    }


def file_label(label):
    """``label`` as it stands in a stored result's file name."""
    return "".join(c if c.isalnum() or c in "@+-_=." else "_" for c in label)


HASH_LENGTH = 10  # hex digits of the settings hash in a stored row's name


def row_name(label, seed, digest):
    """A stored row's file name without suffix: label, seed and the hash of its settings."""
    return f"{file_label(label)}-seed{seed}-{digest}"


def row_pattern(label, seed):
    """Glob pattern of the stored rows of ``label`` and ``seed`` (any settings hash), without suffix."""
    return row_name(label, seed, "?" * HASH_LENGTH)


def result_path(store_dir, settings):
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:HASH_LENGTH]
    return os.path.join(store_dir, row_name(settings["label"], settings["seed"], digest) + ".json")


# Settings added to the YAML defaults after results were stored, with the value that computes
# what those results computed: a stored run that predates a key ran with this value.
ADDED_DEFAULTS = {
    "eval_mask_history": False,
    "item_text_histories": 0,
    "prefix_semantics": "items",
    "semantic_pooling": None,
    "memory_backend": "auto",  # (on a CPU, auto is the faiss bank every stored run used)
    "memory_uri": None,
    "memory_collection": None,
    "memory_token": None,
    **ADDED_REGEN_KEYS,
    "backbone": "DuoRec",  # RaSeRec's (SRA-CL's own YAML has always named its backbone)
    "cross_anchor": "shared",
    "neighbour_search": "auto",
    "position_from": "start",
}


def merged_defaults(defaults):
    """The YAML defaults a run saw, as one mapping (files in load order, later wins; a key added
    since, at its value from before it existed)."""
    merged = dict(ADDED_DEFAULTS)
    for content in defaults.values():
        merged.update(content or {})
    return merged


# Defaults a run reads only under another setting (the ivf lists under memory_index: ivf): left
# out of the comparison when it does not hold or the row sets the key itself, so changing such a
# default keeps the results it could not have changed.
READ_ONLY_UNDER = {
    "memory_nlist": ("memory_index", ("ivf", "auto")),
    "memory_nprobe": ("memory_index", ("ivf", "auto")),
}


def used_defaults(defaults, overrides):
    """``defaults`` without those ``overrides`` replace or the run never reads."""
    out = dict(defaults)
    for key, (switch, value) in READ_ONLY_UNDER.items():
        if key in overrides or overrides.get(switch, defaults.get(switch)) not in value:
            out.pop(key, None)
    return out


# Where a cache lives, not what the run computes: SRA-CL's semantic cache holds each text's vector
# under the text's hash and refuses a file of another sentence model, so moving it changes nothing.
CACHE_LOCATIONS = ("semantic_cache",)


def effective(settings):
    """``settings`` with its YAML defaults merged: what the run computed with, whichever
    properties files held each default (a backbone's settings too) and whether a value was
    given or a default, ``data_path`` as the folder it names, so ``../shared/datasets`` and its
    absolute path find the same result, and no cache locations."""
    merged = merged_defaults(settings.get("defaults") or {})
    overrides = {k: v for k, v in (settings.get("overrides") or {}).items() if k not in CACHE_LOCATIONS}
    if overrides.get("data_path"):
        overrides["data_path"] = os.path.realpath(overrides["data_path"])
    out = {k: v for k, v in settings.items() if k not in ("overrides", "defaults")}
    out["values"] = {**used_defaults(merged, overrides), **overrides}
    if settings.get("backbone_settings"):
        out["backbone_settings"] = effective(settings["backbone_settings"])
    return json.dumps(out, sort_keys=True, default=str)


STARTED = ".settings.json"  # beside a row's folder from its start: its settings, for resuming


def stored_result_path(store_dir, settings):
    """The stored result of ``settings``: the file their hash names, else a stored file of the same
    label and seed whose settings are the same once each side's YAML defaults are merged (so
    moving a default from one properties file to another keeps the results stored before), else
    the result file of a started row (its ``STARTED`` file) with the same settings, so that it
    resumes; else the file their hash names, to be written."""
    path = result_path(store_dir, settings)
    if os.path.isfile(path):
        return path
    want = effective(settings)
    prefix = os.path.join(glob.escape(store_dir), row_pattern(settings["label"], settings["seed"]))
    for other in sorted(glob.glob(prefix + ".json")):
        with open(other, encoding="utf-8") as f:
            stored = json.load(f)
        if "settings" in stored and effective(stored["settings"]) == want:
            return other
    if not os.path.isfile(path[: -len(".json")] + STARTED):
        for started in sorted(glob.glob(prefix + STARTED)):
            with open(started, encoding="utf-8") as f:
                if effective(json.load(f)) == want:
                    return started[: -len(STARTED)] + ".json"
    return path


def _save_json(path, data):
    with atomic_path(path) as tmp_path, open(tmp_path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, default=str)


# run_recbole_rag's own result keys; any other key is a fact its trainer reported (e.g. SRA-CL's
# semantic source), kept with the stored result.
_RESULT_KEYS = {
    "model",
    "dataset",
    "seed",
    "best_valid_score",
    "valid_score_bigger",
    "best_valid_result",
    "test_result",
    "train_time_s",
    "epochs_run",
    "saved_model_file",
    "best_epoch",
    "stopped_early",
    "log_file",
    "per_user",
    "unread_settings",
}


def newest(folder, pattern):
    """The most recently written file in ``folder`` matching ``pattern``, or None."""
    found = glob.glob(os.path.join(glob.escape(folder), pattern))
    return max(found, key=os.path.getmtime) if found else None


def regenerator_dir(store_dir, dataset, seed, regen_config):
    """``<store_dir>/regenerator-seed<seed>-<hash of its pre-training settings>``."""
    return os.path.join(store_dir, f"regenerator-seed{seed}-{regenerator_key(dataset, config_dict=regen_config)}")


def last_checkpoint_in(folder):
    """The newest per-epoch checkpoint (``*-last.pth``) a stopped run left in ``folder``, or None."""
    return newest(folder, "*-last.pth")


def finished_regenerator_in(folder):
    """The checkpoint a finished pre-training wrote (the regenerator saves its final epoch, once,
    at the end), or None: resuming from it trains nothing and decodes again, so a finished
    regenerator needs no ``-last`` file kept beside it."""
    found = [f for f in glob.glob(os.path.join(glob.escape(folder), "*.pth")) if not f.endswith("-last.pth")]
    return max(found, key=os.path.getmtime) if found else None


class row_log:
    """Append the run's log (RecBole's file format) to ``path`` while the block runs."""

    def __init__(self, path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.handler = logging.FileHandler(path, mode="a", encoding="utf-8")
        self.handler.setFormatter(
            logging.Formatter("%(asctime)-15s %(levelname)s  %(message)s", "%a %d %b %Y %H:%M:%S")
        )
        self.handler.addFilter(RemoveColorFilter())

    def __enter__(self):
        logging.getLogger().addHandler(self.handler)

    def __exit__(self, *exc):
        logging.getLogger().removeHandler(self.handler)
        self.handler.close()


def regenerated_dataset(run, config, dataset, seed, sasrec, store_dir, log=print, shared=None):
    """The folder of the regenerated set a row on regenerated data trains on (``config``: the
    row's overrides, seed and checkpoint_dir; ``sasrec``: the stored SASRec row of its seed, whose
    item table starts the regenerator): reused while its manifest matches, else decoded from the
    trained regenerator, else the regenerator is pre-trained first."""
    not_read = {"epochs", "pretrained_path", "resume_path", "checkpoint_dir"}  # the row's own model's
    target_only = set(TARGET_ONLY) & set(run.overrides) - not_read  # the row's protocol, not its regenerator's
    regen_config = {k: v for k, v in config.items() if k not in not_read | target_only}
    regen_config.update({k: v for k, v in (shared or {}).items() if k in target_only})  # given for every row
    regen_config["regen_control"] = True  # the control comes with the set: no second regenerator run
    if not regen_config.get("regen_item_embedding") and sasrec and sasrec["saved_model_file"]:
        if not os.path.isfile(sasrec["saved_model_file"]):
            raise ConfigError(
                f"{run.label}'s regenerator starts from SASRec's checkpoint "
                f"'{sasrec['saved_model_file']}', which is not there (a stored row's path "
                f"is relative to where it ran): run from there, or delete {sasrec['path']}."
            )
        regen_config["regen_item_embedding"] = sasrec["saved_model_file"]  # the reference's start
    # the regenerator's checkpoints, one folder per pre-training that every row on its set
    # shares, so a stopped pre-training goes on where it was and a set deleted since is decoded
    # again from the trained regenerator, not trained again
    regen_config["checkpoint_dir"] = regenerator_dir(store_dir, dataset, seed, regen_config)
    # each seed's set in a folder of its own (its regenerator differs), and a set made (or
    # decoded) otherwise in a folder of its own beside the default set
    folder = os.path.join(regen_config.get("regen_data_path") or os.path.join(store_dir, "regen-data"), f"seed{seed}")
    own = {k: regen_config[k] for k in REGEN_KEYS if k in run.overrides and k in regen_config and k not in target_only}
    # a recipe other than the Regenerator's defaults (e.g. Table 1's first recipe), and another
    # row's item table: sets of their own
    defaults = regenerator_defaults(ADDED_REGEN_KEYS, dataset)
    own.update({k: regen_config[k] for k in defaults if k in regen_config and regen_config[k] != defaults[k]})
    if run.item_table != ITEM_TABLE_ROW:
        own["item_table"] = file_label(run.item_table)
    if own:
        folder = os.path.join(folder, "-".join(f"{k}={v}" for k, v in sorted(own.items())))
    regen_config["regen_data_path"] = folder
    regen_resume = last_checkpoint_in(regen_config["checkpoint_dir"]) or finished_regenerator_in(
        regen_config["checkpoint_dir"]
    )
    if regen_resume:
        regen_config["resume_path"] = regen_resume
        log(f"resume the regenerator of {run.label} seed {seed} from {regen_resume}")
    return regenerate(dataset, config_dict=regen_config, control=run.regenerated == "control")


def run_all(runs, dataset, seeds, overrides, store_dir, run_fn=run_recbole_rag, log=print, read_dirs=(), train=True):
    """Run (or load the stored result of) every available run for every seed; each result is a
    JSON file in ``store_dir`` named by label, seed and a hash of the settings. A result stored
    under the same settings in one of ``read_dirs`` is read from there; with ``train=False``
    a row not stored anywhere is skipped, not run.

    Returns ({label: [result per seed]}, {label: why skipped}). A run whose backbone was skipped
    is skipped too.
    """
    results, skipped = {}, {}
    for run in runs:
        why = available(run) or (f"its backbone {run.backbone} was skipped" if run.backbone in skipped else None)
        if why:
            skipped[run.label] = why
            log(f"skip {run.label}: {why}")
            continue
        results[run.label] = []
        for index, (seed, backbone_result) in enumerate(zip(seeds, results.get(run.backbone) or [None] * len(seeds))):
            settings = settings_of(run, seed, overrides, dataset)
            if backbone_result:
                settings["backbone_settings"] = backbone_result["settings"]
            path = stored_result_path(store_dir, settings)
            elsewhere = [p for p in (stored_result_path(d, settings) for d in read_dirs) if os.path.isfile(p)]
            if not os.path.isfile(path) and elsewhere:
                path = elsewhere[0]
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    results[run.label].append(json.load(f))
                log(f"done {run.label} seed {seed}: stored in {path}")
                continue
            if not train:
                skipped[run.label] = f"not run yet (seed {seed})"
                del results[run.label]
                log(f"skip {run.label}: {skipped[run.label]}")
                break
            row_dir = path[: -len(".json")]
            if not os.path.isfile(row_dir + STARTED):
                _save_json(row_dir + STARTED, settings)
            config = {**settings["overrides"], "seed": seed, "checkpoint_dir": row_dir}
            resume = last_checkpoint_in(row_dir)
            if resume:
                config["resume_path"] = resume
                config.pop("pretrained_path", None)  # the stopped run's checkpoint holds the weights to go on from
                log(f"resume {run.label} seed {seed} from {resume}")
            elif backbone_result:
                checkpoint = backbone_result["saved_model_file"]
                if not checkpoint or not os.path.isfile(checkpoint):
                    raise ConfigError(
                        f"{run.label} needs {run.backbone}'s checkpoint '{checkpoint}', which is gone: "
                        f"delete {backbone_result['path']} so {run.backbone} runs again."
                    )
                config["pretrained_path"] = checkpoint
            log(f"run  {run.label} seed {seed}")
            with row_log(row_dir + ".log"):
                if run.regenerated:
                    sasrec = (results.get(run.item_table) or [None] * len(seeds))[index]
                    folder = regenerated_dataset(run, config, dataset, seed, sasrec, store_dir, log, overrides)
                    name, files, config = regenerated_run(folder, config_dict=config)
                    result = run_fn(run.model, name, config_file_list=files, config_dict=config, per_user=True)
                else:
                    result = run_fn(run.model, dataset, config_dict=config, per_user=True)
            if result.get("per_user"):  # each test user's values, for the paired tests of a table
                save_per_user(per_user_path(path), result["per_user"])
            stored = {
                "settings": settings,
                "path": path,
                "test_result": dict(result["test_result"]),
                "best_valid_result": dict(result["best_valid_result"]),
                "train_time_s": result["train_time_s"],
                "epochs_run": result["epochs_run"],
                "best_epoch": result.get("best_epoch"),
                "stopped_early": result.get("stopped_early"),
                "saved_model_file": result["saved_model_file"],
                "log": row_dir + ".log",
                "run_info": {k: v for k, v in result.items() if k not in _RESULT_KEYS},
            }
            _save_json(path, stored)
            if result["saved_model_file"] and os.path.isfile(result["saved_model_file"]):
                drop_training_state(result["saved_model_file"])  # a finished row is evaluated, not resumed
            results[run.label].append(stored)
    return results, skipped


def mean_spread(values):
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _cell(mean, spread):
    return f"{mean:.4f}" if spread is None else f"{mean:.4f} ± {spread:.4f}"


def tests_against_base(results, label, runs=RUNS):
    """(base label, {metric: PairedTest}) of ``label``'s row against its base row over the same
    test users, pooled over seeds (each user's mean over the seeds both rows ran); an empty dict
    where either row lacks per-user values (rows stored before they were kept)."""
    run = next((r for r in runs if r.label == label), None)
    base = base_of(run) if run else results[label][0].get("settings", {}).get("backbone")
    if base not in results:
        return None, {}
    seeds = [r["settings"]["seed"] for r in results[label]]
    by_seed = {r["settings"]["seed"]: r for r in results[base]}
    pairs = [(by_seed[seed], row) for seed, row in zip(seeds, results[label]) if seed in by_seed]
    paths = [per_user_path(r["path"]) for pair in pairs for r in pair]
    if not pairs or not all(os.path.isfile(p) for p in paths):
        return base, {}
    values = [load_per_user(p) for p in paths]
    pooled_base, pooled = mean_over_runs(values[0::2]), mean_over_runs(values[1::2])
    return base, {t.metric: t for t in compare_runs(pooled_base, pooled, TESTED)}


def paired_cell(test):
    """A paired test as a table cell: difference [95% interval] p (blank where none)."""
    if test is None:
        return ""
    if test.identical:
        return "identical"
    return f"{test.difference:+.4f} [{test.ci_low:+.4f}, {test.ci_high:+.4f}] p={format_p(test.p_t)}"


def write_accuracy(results, skipped, dataset, seeds, budget, out_dir="results"):
    """results/<dataset>-accuracy.md and .csv: ours (mean ± std over seeds, each row tested against
    its base row where both kept per-user values) then published rows."""
    published = PUBLISHED.get(dataset, {})
    header = ["method", "source", "seeds"] + METRICS + ["train s", "vs", "N@10: difference [95% CI] p", "R@10 p"]
    rows, csv_rows = [], []
    for label, per_seed in results.items():
        stats = [mean_spread([r["test_result"][m] for r in per_seed]) for m in METRICS]
        train = statistics.fmean(r["train_time_s"] for r in per_seed)
        base, tests = tests_against_base(results, label)
        ndcg, recall = tests.get("ndcg@10"), tests.get("recall@10")
        rows.append(
            [label, "ours", len(per_seed)]
            + [_cell(*s) for s in stats]
            + [f"{train:.0f}", base or "", paired_cell(ndcg), format_p(recall.p_t) if recall else ""]
        )
        csv_rows.append(
            [label, "ours", len(per_seed)]
            + [m for m, _ in stats]
            + [s for _, s in stats]
            + [round(train, 1), base or ""]
            + ([ndcg.difference, ndcg.ci_low, ndcg.ci_high, ndcg.p_t] if ndcg else [""] * 4)
            + [recall.p_t if recall else ""]
        )
        for source, numbers in published.get(label, []):
            rows.append(
                [f"*{label}*", f"*{source}*", ""]
                + [f"{numbers[m]:.4f}" if m in numbers else "" for m in METRICS]
                + [""] * 4
            )
            csv_rows.append(
                [label, source, ""] + [numbers.get(m, "") for m in METRICS] + [""] * len(METRICS) + [""] * 7
            )
    notes = [
        f"Budget: {budget}; seeds {','.join(map(str, seeds))}; mean ± sample std over seeds.",
        "vs: the row each gain is tested against over the same test users (NDCG@10 difference of "
        "means, 95% bootstrap interval, two-sided paired t-test p; over several seeds each user's mean); "
        "blank where a row kept no per-user values.",
    ]
    if any(label in published for label in results):
        notes.append("Published rows (italic) come from full-length training in their sources.")
    if any(r.get("settings", {}).get("backbone") for per_seed in results.values() for r in per_seed):
        notes.append("M@B: M starts from B's checkpoint; its train s counts only its own stages.")
    for label, per_seed in results.items():
        facts = sorted({f"{k}: {v}" for r in per_seed for k, v in r.get("run_info", {}).items()})
        if facts:
            notes.append(f"{label}: {'; '.join(facts)}.")
    notes += [f"{label}: skipped ({why})." for label, why in skipped.items()]
    csv_header = (
        ["method", "source", "seeds"]
        + METRICS
        + [f"{m}_std" for m in METRICS]
        + ["train_time_s", "base", "ndcg@10_difference", "ndcg@10_ci_low", "ndcg@10_ci_high", "p_value"]
        + ["recall@10_p_value"]
    )
    return write_report(
        os.path.join(out_dir, f"{dataset}-accuracy"),
        f"Test results on {dataset}",
        header,
        rows,
        csv_header,
        csv_rows,
        notes,
    )


def build_parser():
    parser = table_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=None, help="training epochs of every model (default: the YAML's)")
    parser.add_argument("--raft_epochs", type=int, default=None, help="RaSeRec stage-2 epochs (default: the YAML's)")
    parser.add_argument("--seeds", default="2020", help="comma-separated seeds (default 2020)")
    parser.add_argument("--runs", default="", help="comma-separated labels of RUNS (default: all)")
    parser.add_argument(
        "--store_dir",
        default=None,
        help="where finished runs are stored and read back (default <out_dir>/<dataset>-accuracy); e.g. "
        "results/<dataset>-full reuses the full table's rows run under the same settings",
    )
    return parser


def main(argv=None):
    return command(lambda: _main(argv))


def _main(argv):
    args, rest = build_parser().parse_known_args(argv)
    seeds = parse_seeds(args.seeds)
    for name in ("epochs", "raft_epochs"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ConfigError(f"--{name} must be >= 1, got {getattr(args, name)}.")
    overrides = {"show_progress": False, **parse_overrides(rest)}
    runs = select_runs(parse_labels(args.runs), item_table_given="regen_item_embedding" in overrides)
    for name in ("data_path", "epochs", "raft_epochs"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    results, skipped = run_all(
        runs,
        args.dataset,
        seeds,
        overrides,
        args.store_dir or os.path.join(args.out_dir, f"{args.dataset}-accuracy"),
    )
    if not results:
        print("error: no run of the table is available in this build.", file=sys.stderr)
        return 2
    budget = f"epochs={args.epochs or 'YAML'}, raft_epochs={args.raft_epochs or 'YAML'}"
    given = {k: v for k, v in overrides.items() if k not in ("show_progress", "data_path", "epochs", "raft_epochs")}
    if given:  # e.g. a weight changed for every row: the table must say so
        budget += "; every run with " + ", ".join(f"{k}={v}" for k, v in sorted(given.items()))
    print(write_accuracy(results, skipped, args.dataset, seeds, budget, args.out_dir))
    print(f"\nwritten to {args.out_dir}/{args.dataset}-accuracy.md and .csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
