"""The regenerated dataset as a reusable artefact: RecBole atomic files under a new name.

Layout of ``<regen_data_path>/<dataset>-regen/`` (RecBole's ``benchmark_filename`` format, one
row per <history, next item> pair, so RecBole uses the split as written):

    <name>.train.inter   every original training row (``regen_original_copies`` times: the
                         reference's set holds them twice), then what ``regen_data`` adds:
                         reference (the reference code's data): every mined pattern and every
                         regenerated sequence s as a sequence of its own, rows s[:j] -> s[j]
                         (j >= 1) under a user id of its own ("pattern-<i>", "regen-<i>");
                         regenerated: the regenerated sequences only (our inference mode: each
                         pattern q of user u as rows q[:j] -> q[j] under u's own id, timestamped
                         just after u's last training item)
    <name>.valid.inter   the original validation rows, unchanged (each user's second-last item)
    <name>.test.inter    the original test rows, unchanged (each user's last item)
    <name>.patterns      the mined patterns (item tokens, support), for a pattern memory bank
    <name>.yaml          the settings RecBole needs to load these files (pass it in --config_files)
    manifest.json        source dataset and its checksum, settings, counts, time

With ``regen_control: True`` a second folder ``<dataset>-regen-control/`` holds the control: the
original training rows plus as many rows again as the regenerated set adds, drawn at random from
the original training rows, so a model trained on it takes the same number of gradient steps per
epoch on nothing new.

Everything is written into a temporary sibling folder that is renamed into place at the end,
so an interrupted run never leaves a dataset a later run would pick up.
"""

import hashlib
import json
import os
import shutil
import time

import numpy as np

from recbole_rag.checkpoint import load_checkpoint
from recbole_rag.errors import CheckpointError, DatasetError

FORMAT_VERSION = 2  # 2: regen_data, the control, sequences under their own user ids
MANIFEST = "manifest.json"
# Settings that change what is written: a saved set is reused only when all of them match.
REGEN_KEYS = (
    "pattern_window",
    "pattern_min_support",
    "pattern_min_len",
    "pattern_max_len",
    "pattern_pairs_per_sequence",
    "regen_per_user",
    "regen_balance",
    "regen_inference",
    "regen_data",
    "regen_conditions",
    "regen_entropy_weight",
    "regen_view_balance",
    "regen_source_mask",
    "regen_source_tokens",
    "regen_original_copies",
    "regen_source_steps",
    "regen_max_len",
    "regen_min_len",
    "regen_item_embedding",
    "MAX_ITEM_LIST_LENGTH",
    "user_inter_num_interval",
    "item_inter_num_interval",
    "seed",
    "epochs",
    "learning_rate",
    "regen_lr_schedule",
    "train_batch_size",
    "hidden_size",
    "n_layers",
    "n_heads",
    "inner_size",
    "hidden_dropout_prob",
)
# Keys added after sets were saved, with the value every set saved before them was written under:
# such a key enters a manifest (and a regenerator's name) only at another value, so the sets and
# regenerators saved before are still found where the run is theirs.
ADDED_REGEN_KEYS = {"regen_source_tokens": False, "regen_original_copies": 1}
_ABSENT = object()


def regen_name(dataset):
    return f"{dataset}-regen"


def regen_root(config):
    """Folder that holds ``<dataset>-regen/``: ``regen_data_path``, else next to the source."""
    return config["regen_data_path"] or os.path.dirname(os.path.normpath(config["data_path"]))


def regen_folder(config, control=False):
    return os.path.join(regen_root(config), regen_name(config["dataset"]) + ("-control" if control else ""))


def source_checksum(config):
    path = os.path.join(config["data_path"], f"{config['dataset']}.inter")
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def item_table_fingerprint(path):
    """sha1 of a checkpoint's item_embedding.weight (the regenerator's starting item table), so a
    saved set is reused when the table is the same whatever file or run it came from."""
    if not path:
        return None
    weight = load_checkpoint(path)["state_dict"].get("item_embedding.weight")
    if weight is None:
        raise CheckpointError(f"'{path}' has no item_embedding.weight: use a SASRec, DuoRec or RaSeRec checkpoint.")
    return hashlib.sha1(weight.float().numpy().tobytes()).hexdigest()[:16]


def expected_manifest(config, control=False):
    """The parts of a manifest that must match for a saved set to be reused."""
    settings = {key: config[key] for key in REGEN_KEYS if ADDED_REGEN_KEYS.get(key, _ABSENT) != config[key]}
    settings["regen_item_embedding"] = item_table_fingerprint(config["regen_item_embedding"])
    return {
        "version": FORMAT_VERSION,
        "source": {"dataset": config["dataset"], "inter_sha1": source_checksum(config)},
        "settings": settings,
        "control": control,
    }


# Settings read only when decoding: a trained regenerator decodes again under other values.
DECODING_KEYS = ("regen_data", "regen_max_len", "regen_min_len", "regen_source_steps", "regen_original_copies")


def pretraining_key(config):
    """A short hash of what the regenerator's pre-training depends on (source, settings, item
    table), so runs that need the same regenerator find its checkpoints in one place."""
    manifest = expected_manifest(config)
    manifest["settings"] = {k: v for k, v in manifest["settings"].items() if k not in DECODING_KEYS}
    del manifest["control"]
    return hashlib.sha1(json.dumps(manifest, sort_keys=True, default=str).encode()).hexdigest()[:10]


def find_regenerated(config, control=False):
    """The folder of a saved regenerated set (or its control) made from this source with these
    settings, or None when there is none. A folder whose manifest differs stops with what
    differs, unless ``regen_overwrite`` (then None: it will be replaced)."""
    folder = regen_folder(config, control)
    if not os.path.isdir(folder):
        return None
    path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(path):
        raise DatasetError(
            f"'{folder}' exists but has no {MANIFEST}: it was not written by a completed "
            "regeneration. Remove it, or set --regen_data_path to another folder."
        )
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except (ValueError, OSError) as error:  # written atomically: only a hand edit or a disk fault
        raise DatasetError(
            f"'{path}' cannot be read ({error}). Remove '{folder}' to regenerate it, or set "
            "--regen_data_path to another folder."
        ) from None
    if not isinstance(saved, dict):
        raise DatasetError(f"'{path}' is not a manifest (a JSON object). Remove '{folder}' to regenerate it.")
    wanted = expected_manifest(config, control)
    differences = _differences(wanted, {k: saved.get(k) for k in wanted})
    if not differences:
        return folder
    if config["regen_overwrite"]:
        return None
    raise DatasetError(
        f"The regenerated dataset in '{folder}' does not match this run ({'; '.join(differences[:6])}). "
        "Pass --regen_overwrite=True to regenerate it, or --regen_data_path=<another folder> to keep both."
    )


def _differences(wanted, saved, prefix=""):
    out = []
    for key, value in wanted.items():
        other = (saved or {}).get(key)
        if isinstance(value, dict):
            out += _differences(value, other if isinstance(other, dict) else {}, f"{prefix}{key}.")
        elif json.loads(json.dumps(value)) != other:
            out.append(f"{prefix}{key}: saved {other!r}, now {value!r}")
    return out


def split_rows(dataset, config):
    """(user tokens, history strings, target tokens, timestamps) of a split's rows."""
    feat = dataset.inter_feat
    uid, iid = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
    item_tokens = dataset.field2id_token[iid]
    histories = feat[iid + config["LIST_SUFFIX"]].numpy()
    lengths = feat[config["ITEM_LIST_LENGTH_FIELD"]].numpy()
    return (
        dataset.field2id_token[uid][feat[uid].numpy()],
        [" ".join(item_tokens[row[:n]]) for row, n in zip(histories, lengths)],
        item_tokens[feat[iid].numpy()],
        feat[config["TIME_FIELD"]].numpy(),
    )


def transition_rows(dataset, entries):
    """Rows s[:j] -> s[j] (j >= 1) of (user token, item ids s, base time, time step) entries;
    row j is timestamped base + j * step."""
    item_tokens = dataset.field2id_token[dataset.iid_field]
    rows = ([], [], [], [])
    for user, sequence, base, step in entries:
        for j in range(1, len(sequence)):
            rows[0].append(user)
            rows[1].append(" ".join(item_tokens[sequence[:j]]))
            rows[2].append(item_tokens[sequence[j]])
            rows[3].append(base + j * step)
    return rows


def regenerated_rows(dataset, users, patterns, times):
    """Rows q[:j] -> q[j] of each regenerated pattern q (0-padded) of each user (internal ids),
    under the user's id, timestamped just after its last training item."""
    user_tokens = dataset.field2id_token[dataset.uid_field]
    entries = (
        (user_tokens[user], pattern[pattern > 0], t + 1.0, 0.0)
        for user, user_patterns, t in zip(users, patterns, times)
        for pattern in user_patterns
    )
    return transition_rows(dataset, entries)


def sequence_rows(dataset, sequences, prefix):
    """Rows s[:j] -> s[j] of each sequence s (internal ids) under a user id of its own,
    ``<prefix>-<i>``, timestamped by position."""
    entries = ((f"{prefix}-{i}", np.asarray(sequence), 0.0, 1.0) for i, sequence in enumerate(sequences))
    return transition_rows(dataset, entries)


def resampled_rows(rows, n, seed):
    """``n`` rows drawn at random (seeded) from ``rows``: the control's extra. Each row is drawn
    once per round of draws (a random order per round), and a round-r copy is timestamped
    (r + 1) / (rounds + 1) after its row, so no row repeats another exactly."""
    size = len(rows[0])
    rounds = -(-n // size) if size else 0
    rng = np.random.default_rng(seed)
    picks = np.concatenate([rng.permutation(size) for _ in range(rounds)] or [np.zeros(0, np.int64)])[:n]
    users, histories, targets, times = ([column[i] for i in picks] for column in rows)
    shifts = (np.arange(len(picks)) // max(size, 1) + 1) / (rounds + 1)
    return users, histories, targets, [t + shift for t, shift in zip(times, shifts)]


def _write_inter(path, config, rows):
    iid = config["ITEM_ID_FIELD"]
    header = [
        f"{config['USER_ID_FIELD']}:token",
        f"{iid}{config['LIST_SUFFIX']}:token_seq",
        f"{iid}:token",
        f"{config['TIME_FIELD']}:float",
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\t".join(header) + "\n")
        for parts in rows:
            for user, history, target, t in zip(*parts):
                f.write(f"{user}\t{history}\t{target}\t{float(t)!r}\n")


def _loader_settings(config):
    iid = config["ITEM_ID_FIELD"]
    return {
        "benchmark_filename": ["train", "valid", "test"],
        f"alias_of_{iid}": [iid + config["LIST_SUFFIX"]],
        "load_col": {"inter": [config["USER_ID_FIELD"], iid + config["LIST_SUFFIX"], iid, config["TIME_FIELD"]]},
        "MAX_ITEM_LIST_LENGTH": config["MAX_ITEM_LIST_LENGTH"],
    }


def distinct_patterns(user_patterns):
    """(U, n, L) 0-padded patterns per user -> the distinct ones of two or more items, sorted."""
    distinct = {tuple(int(i) for i in q if i) for per_user in user_patterns for q in per_user}
    return sorted(q for q in distinct if len(q) >= 2)


def added_rows(config, train, regenerated, patterns):
    """(rows, counts) that ``regen_data`` adds to the original training rows (module docstring).

    regenerated: a list of sequences (reference inference) or (users (U,), patterns (U, n,
    pattern_max_len)) in internal ids (our inference)."""
    if isinstance(regenerated, tuple):  # our inference: patterns per user
        users, user_patterns = regenerated
        if config["regen_data"] == "regenerated":
            last_time = np.full(train.user_num, -np.inf)
            feat = train.inter_feat
            np.maximum.at(last_time, feat[config["USER_ID_FIELD"]].numpy(), feat[config["TIME_FIELD"]].numpy())
            rows = regenerated_rows(train, users, user_patterns, last_time[users])
            return [rows], {"regenerated_sequences": int((user_patterns > 0).any(-1).sum())}
        regenerated = distinct_patterns(user_patterns)
    parts = [sequence_rows(train, regenerated, "regen")]
    counts = {"regenerated_sequences": len(regenerated)}
    if config["regen_data"] == "reference":
        mined = [items[:n] for items, n in zip(patterns.items, patterns.lengths)]
        parts.insert(0, sequence_rows(train, mined, "pattern"))
        counts["pattern_sequences"] = len(mined)
    return parts, counts


def write_regenerated(config, splits, regenerated, patterns, seconds, stats=None):
    """Write the regenerated dataset (see the module docstring), and its control with
    ``regen_control``; returns the regenerated set's folder.

    splits: the source's (train, valid, test) RecBole datasets; regenerated: see ``added_rows``;
    patterns: the mined ``Patterns``; stats: what regeneration produced (patterns.sequence_stats),
    kept in the manifest.
    """
    train = splits[0]
    train_rows = split_rows(train, config)
    parts, counts = added_rows(config, train, regenerated, patterns)
    repeats = config["regen_original_copies"] - 1  # the reference: the original rows a second time
    if repeats:
        parts = [train_rows] * repeats + parts
        counts["original_rows_repeated"] = repeats * len(train_rows[0])
    n_added = sum(len(part[0]) for part in parts)
    counts.update(train_rows_original=len(train_rows[0]), train_rows_added=n_added)
    if stats:
        counts["regenerated_stats"] = {**stats, "lengths": {str(k): v for k, v in stats["lengths"].items()}}
    if config["regen_control"]:
        control = [resampled_rows(train_rows, n_added, config["seed"])]
        _write_set(config, splits, train_rows, control, patterns, seconds, counts, control=True)
    return _write_set(config, splits, train_rows, parts, patterns, seconds, counts)


def _write_set(config, splits, train_rows, parts, patterns, seconds, counts, control=False):
    train, valid, test = splits
    folder = regen_folder(config, control)
    name = os.path.basename(folder)
    root = os.path.dirname(folder)
    os.makedirs(root, exist_ok=True)
    tmp = os.path.join(root, f".{name}.tmp-{os.getpid()}-{time.time_ns()}")
    os.makedirs(tmp)
    try:
        _write_inter(os.path.join(tmp, f"{name}.train.inter"), config, [train_rows, *parts])
        _write_inter(os.path.join(tmp, f"{name}.valid.inter"), config, [split_rows(valid, config)])
        _write_inter(os.path.join(tmp, f"{name}.test.inter"), config, [split_rows(test, config)])
        _write_patterns(os.path.join(tmp, f"{name}.patterns"), train, patterns)
        with open(os.path.join(tmp, f"{name}.yaml"), "w", encoding="utf-8") as f:
            f.write("# Loads the regenerated dataset written by recbole_rag.regeneration (see manifest.json).\n")
            json.dump(_loader_settings(config), f)  # JSON is YAML
            f.write("\n")
        expected = expected_manifest(config, control)
        manifest = {
            **expected,
            "source": {**expected["source"], "data_path": os.path.abspath(config["data_path"])},
            "counts": {
                "users": int(train.user_num - 1),
                "items": int(train.item_num - 1),
                "patterns": len(patterns),
                **counts,
                "valid_rows": len(valid.inter_feat),
                "test_rows": len(test.inter_feat),
            },
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "seconds": round(seconds, 1),
        }
        with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:  # last: marks the set complete
            json.dump(manifest, f, indent=2)
        _move_into_place(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _move_into_place(tmp, folder):
    """Rename ``tmp`` to ``folder``; an older set there is replaced only after the new one is whole."""
    if not os.path.exists(folder):
        os.rename(tmp, folder)
        return
    old = f"{tmp}-old"
    os.rename(folder, old)
    os.rename(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def _write_patterns(path, dataset, patterns):
    item_tokens = dataset.field2id_token[dataset.iid_field]
    with open(path, "w", encoding="utf-8") as f:
        f.write("pattern\tsupport\n")
        for items, length, support in zip(patterns.items, patterns.lengths, patterns.support):
            f.write(f"{' '.join(item_tokens[items[:length]])}\t{int(support)}\n")


def read_patterns(path, dataset):
    """(items (P, max_len) internal ids 0-padded, support (P,)) from a ``.patterns`` file."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()[1:]
    rows = [line.split("\t") for line in lines if line]
    token_lists = [r[0].split(" ") for r in rows]
    width = max((len(t) for t in token_lists), default=0)
    items = np.zeros((len(rows), width), np.int64)
    for i, tokens in enumerate(token_lists):
        items[i, : len(tokens)] = dataset.token2id(dataset.iid_field, tokens)
    return items, np.array([int(r[1]) for r in rows], np.int64)
