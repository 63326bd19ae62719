"""One path for every run: Config -> RecBole dataset and dataloaders -> model -> trainer ->
RecBole's evaluator; and ``compare`` for several models under the same settings."""

from __future__ import annotations

import csv
import logging
import numbers
import os
import statistics
import time
import warnings
from collections.abc import Sequence
from logging import getLogger
from typing import Any

from recbole.data import data_preparation
from recbole.utils import dict2str, init_logger, init_seed, set_color

from recbole_rag.config import Config
from recbole_rag.data import load_dataset
from recbole_rag.errors import ConfigError, is_count
from recbole_rag.files import atomic_path, check_writable_folder, claim_path
from recbole_rag.model.backbone import BACKBONE_MODELS
from recbole_rag.registry import get_model, get_trainer, model_class
from recbole_rag.runtime import tune_cpu
from recbole_rag.significance import TESTED, PairedTest, capture_per_user, compare_runs, format_p, mean_over_runs
from recbole_rag.trainer.distributed import distributed_trainer
from recbole_rag.trainer.history_mask import history_masked
from recbole_rag.trainer.personaliser import personalised


def run_recbole_rag(
    model: str,
    dataset: str,
    config_file_list: list[str] | None = None,
    config_dict: dict[str, Any] | None = None,
    saved: bool = True,
    per_user: bool = False,
    warn_unread: bool = True,
) -> dict[str, Any]:
    """Train and test ``model`` on ``dataset``; returns a dict with the best valid and the test
    results (RecBole's metric names, e.g. ``test_result['ndcg@10']``) and timings; with
    ``per_user``, also ``per_user``: each test user's values, for paired tests
    (recbole_rag.significance); ``unread_settings``: settings given that the run never read
    (warned about unless ``warn_unread`` is False)."""
    config = Config(model, dataset, config_file_list, config_dict)
    check_output_paths(config)
    init_seed(config["seed"], config["reproducibility"])
    _init_run_logger(config)
    logger = getLogger()
    logger.info(config)
    if config["cpu_tuning"]:
        logger.info(f"CPU tuning: {tune_cpu()}")

    data = load_dataset(config)
    logger.info(data)
    train_data, valid_data, test_data = data_preparation(config, data)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = model_class(config)(config, train_data.dataset).to(config["device"])
    logger.info(model)
    trainer_class = get_trainer(config["MODEL_TYPE"], config["model"])
    if config["personalise"]:  # DR4SR+: the model trains on personalised row weights
        trainer_class = personalised(trainer_class)
    if not config["single_spec"]:  # one of several processes (recbole_rag.distributed)
        trainer_class = distributed_trainer(trainer_class)
    if config["eval_mask_history"]:  # the ICLRec / DR4SR evaluation line
        trainer_class = history_masked(trainer_class)
    trainer = trainer_class(config, model)

    start = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"]
    )
    train_time = trainer.train_seconds() if hasattr(trainer, "train_seconds") else time.perf_counter() - start
    with capture_per_user(trainer, train_data.dataset, {}) as users:
        test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    logger.info(set_color("best valid ", "yellow") + f": {dict2str(best_valid_result or {})}")
    logger.info(set_color("test result", "yellow") + f": {dict2str(test_result or {})}")
    epochs_run = max(len(trainer.train_loss_dict), 1)
    unread = config.unread_settings()
    if unread and warn_unread:
        warn_unread_settings(unread, f"{config['model']} never read them")
    return {
        "model": config["model"],
        "dataset": config["dataset"],
        "seed": config["seed"],
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": dict(best_valid_result or {}),
        "test_result": dict(test_result or {}),
        "train_time_s": train_time,
        "epochs_run": epochs_run,
        "best_epoch": getattr(trainer, "best_epoch", None),
        "stopped_early": getattr(trainer, "stopped_early", None),
        "saved_model_file": trainer.saved_model_file if saved else None,
        "log_file": _log_file(logger),
        "unread_settings": unread,
        **({"per_user": users} if per_user else {}),
        **getattr(trainer, "run_info", {}),  # facts a trainer reports, e.g. SRA-CL's semantic source
    }


class UnreadSettingWarning(UserWarning):
    """Settings a run was given and never read (another model's, e.g. --alpha on SASRec)."""


def warn_unread_settings(keys: Sequence[str], who_read_none: str) -> None:
    if keys:
        warnings.warn(
            f"{', '.join(keys)}: given, but {who_read_none}, so they changed nothing (a setting of another model?).",
            UnreadSettingWarning,
            stacklevel=3,
        )


def check_output_paths(config: Config) -> None:
    """Every place the run will write, checked writable before the data loads (a read-only or
    file-blocked path used to fail after stage 1 had trained)."""
    check_writable_folder(config["checkpoint_dir"], "checkpoint_dir")
    for key in ("memory_path", "memory_uri"):
        value = config[key] if key in config else None
        if value and "://" not in str(value):  # a local file (a Milvus server's address is not)
            if key == "memory_path" and os.path.isdir(value):
                raise ConfigError(f"{key} '{value}' is a folder: point it at a file.")
            if os.path.isfile(value):
                continue  # an existing bank is read, not written
            check_writable_folder(os.path.dirname(os.path.abspath(value)), f"{key}'s folder")


def _init_run_logger(config: Config) -> None:
    """RecBole's init_logger, with a log file per run. Its logging.basicConfig adds handlers only
    to a root logger that has none: with any handler there (an earlier run's, a caller's) the run
    would log to no file of its own. So the other handlers step aside while it runs, and the
    handlers it added for the previous run of this process go."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "recbole_rag_run", False)]:
        root.removeHandler(handler)
        handler.close()
    others = list(root.handlers)
    for handler in others:
        root.removeHandler(handler)
    try:
        init_logger(config)
    finally:
        for handler in root.handlers:
            handler.recbole_rag_run = True
        for handler in others:
            root.addHandler(handler)


def _log_file(logger: logging.Logger) -> str | None:
    """The file RecBole's init_logger is writing this run's log to (None if it writes none)."""
    files = [
        h.baseFilename
        for h in logger.handlers
        if isinstance(h, logging.FileHandler) and getattr(h, "recbole_rag_run", False)
    ]
    return files[-1] if files else None


def comparison_table(results: list[dict[str, Any]], metrics: list[str], baseline: str) -> list[tuple]:
    """Rows of (label, seeds, means, sample stds (None for one seed), relative change of each mean
    over ``baseline``'s, mean train seconds, mean epochs), one per label in the order run."""
    by_label = {}
    for result in results:
        by_label.setdefault(result["model"], []).append(result)
    base = {m: statistics.fmean(r["test_result"][m] for r in by_label[baseline]) for m in metrics}
    rows = []
    for label, runs in by_label.items():
        values = [[r["test_result"][m] for r in runs] for m in metrics]
        means = [statistics.fmean(v) for v in values]
        stds = [statistics.stdev(v) if len(v) > 1 else None for v in values]
        changes = [(mean - base[m]) / base[m] * 100 if base[m] else float("nan") for mean, m in zip(means, metrics)]
        seconds = statistics.fmean(r["train_time_s"] for r in runs)
        epochs = statistics.fmean(r["epochs_run"] for r in runs)
        rows.append((label, len(runs), means, stds, changes, seconds, epochs))
    return rows


def significance_table(
    results: list[dict[str, Any]], baseline: str, metrics: Sequence[str] = TESTED
) -> list[tuple[str, Any, PairedTest]]:
    """Paired tests of every label against ``baseline`` over the same test users: per seed and,
    with several seeds, ``pooled`` (each user's value averaged over the seeds).
    Returns [(label, seed or "pooled", PairedTest)]."""
    runs = {}
    for result in results:
        if result.get("per_user"):
            runs.setdefault(result["model"], {})[result.get("seed")] = result["per_user"]
    rows = []
    for label, by_seed in runs.items():
        if label == baseline:
            continue
        seeds = [seed for seed in by_seed if seed in runs.get(baseline, {})]
        measured = [m for m in metrics if all(m in run for run in (*by_seed.values(), *runs[baseline].values()))]
        for seed in seeds:
            rows += [(label, seed, t) for t in compare_runs(runs[baseline][seed], by_seed[seed], measured)]
        if len(seeds) > 1:
            pooled_base = mean_over_runs([runs[baseline][s] for s in seeds])
            pooled = mean_over_runs([by_seed[s] for s in seeds])
            rows += [(label, "pooled", t) for t in compare_runs(pooled_base, pooled, measured)]
    return rows


def _cell(mean: float, std: float | None) -> str:
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"


def write_comparison(
    results: list[dict[str, Any]], dataset: str, out_dir: str = "saved", baseline: str | None = None
) -> str:
    """Write ``<out_dir>/<dataset>-compare.md`` and ``.csv`` (mean ± std over seeds, change over
    the baseline) and ``<dataset>-compare-significance.csv`` (paired tests); return the Markdown.
    A table already there stays: the new one takes the next free ``-compare-<n>`` name, which
    each result records as ``table_file``."""
    baseline = baseline or results[0]["model"]
    metrics = list(results[0]["test_result"])
    rows = comparison_table(results, metrics, baseline)
    header = ["model", "seeds"] + metrics + [f"{m} vs {baseline}" for m in metrics] + ["train s", "epochs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, n, means, stds, changes, seconds, epochs in rows:
        cells = [label, str(n)] + [_cell(m, s) for m, s in zip(means, stds)] + [f"{c:+.1f}%" for c in changes]
        lines.append("| " + " | ".join(cells + [f"{seconds:.0f}", f"{epochs:g}"]) + " |")
    tests = significance_table(results, baseline)
    if tests:
        lines += [
            "",
            f"Paired tests against {baseline} over the same test users (difference of means, 95% bootstrap "
            "interval, two-sided p of the paired t-test and of the Wilcoxon signed-rank test):",
            "",
            "| model | seed | metric | difference | 95% CI | p (t) | p (Wilcoxon) |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, seed, t in tests:
            interval = "identical" if t.identical else f"[{t.ci_low:+.4f}, {t.ci_high:+.4f}]"
            lines.append(
                f"| {label} | {seed} | {t.metric} | {t.difference:+.4f} | {interval} | "
                f"{format_p(t.p_t)} | {format_p(t.p_wilcoxon)} |"
            )
    table = "\n".join(lines)
    base = claim_path(os.path.join(out_dir, f"{dataset}-compare.md"))[: -len(".md")]
    for result in results:
        result["table_file"] = base + ".md"
    with atomic_path(base + ".md") as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(f"# Test results on {dataset}\n\n{table}\n")
    with atomic_path(base + ".csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["model", "seeds"]
            + metrics
            + [f"{m}_std" for m in metrics]
            + [f"{m}_change_pct" for m in metrics]
            + ["train_time_s", "epochs_run"]
        )
        for label, n, means, stds, changes, seconds, epochs in rows:
            stds = ["" if s is None else s for s in stds]
            writer.writerow([label, n] + means + stds + [round(c, 2) for c in changes] + [round(seconds, 1), epochs])
    with atomic_path(base + "-significance.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["model", "baseline", "seed", "metric", "users", "mean_baseline", "mean_model", "difference"]
            + ["ci_low", "ci_high", "p_t", "p_wilcoxon"]
        )
        for label, seed, t in tests:
            p_t, p_w = ("" if p is None else p for p in (t.p_t, t.p_wilcoxon))
            writer.writerow(
                [label, baseline, seed, t.metric, t.users, t.mean_a, t.mean_b, t.difference]
                + [t.ci_low, t.ci_high, p_t, p_w]
            )
    return table


# Models that can start from another model's checkpoint (``pretrained_path``).
TAKES_BACKBONE = {"RaSeRec"}


def parse_compare_entries(models: str | list[str]) -> list[tuple[str, str, str | None]]:
    """``"SASRec,DuoRec,RaSeRec@DuoRec"`` -> [(label, model, backbone label or None)], checked.

    ``M@B`` runs M starting from the checkpoint of B, trained earlier in the same comparison
    (RaSeRec's RAFT on a DuoRec or SASRec backbone, as the reference study does, or on any
    RecBole sequential model it can wrap, e.g. ``RaSeRec@GRU4Rec``).
    """
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    if not models:
        raise ConfigError("--compare needs at least one model, e.g. --compare=SASRec,DuoRec.")
    entries, seen = [], set()
    for label in models:
        name, _, backbone = label.partition("@")
        get_model(name)  # fail before any training if a name is wrong
        if backbone and name not in TAKES_BACKBONE:
            raise ConfigError(f"'{label}': only {', '.join(sorted(TAKES_BACKBONE))} can start from a backbone.")
        if backbone and backbone not in seen:
            raise ConfigError(f"'{label}': list {backbone} before it in --compare, so its checkpoint exists.")
        if label in seen:
            raise ConfigError(f"'{label}' is listed twice in --compare: each model runs once.")
        entries.append((label, name, backbone or None))
        seen.add(label)
    return entries


def compare(
    models: str | list[str],
    dataset: str,
    config_file_list: list[str] | None = None,
    config_dict: dict[str, Any] | None = None,
    out_dir: str = "saved",
    seeds: list[int] | None = None,
    baseline: str | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """Run each model with the same data, split, seed and budget (each of ``seeds``, else the
    configured seed), test each against ``baseline`` (default the first) over the same test users;
    write and return the table. Each result carries its ``seed`` and ``per_user`` values."""
    entries = parse_compare_entries(models)
    labels = [label for label, _, _ in entries]
    if baseline is not None and baseline not in labels:
        raise ConfigError(f"--baseline '{baseline}' is not among the compared models ({', '.join(labels)}).")
    seeds = check_seeds(seeds)
    check_writable_folder(out_dir, "out_dir")
    results = []
    model_of = {label: name for label, name, _ in entries}
    for seed in seeds:
        checkpoints = {}
        for label, name, backbone in entries:
            overrides = dict(config_dict or {})
            if seed is not None:
                overrides["seed"] = seed
            if backbone:
                overrides["pretrained_path"] = checkpoints[backbone]
                # our encoder loads DuoRec / SASRec / RaSeRec weights; any other model is RAFT's backbone itself
                overrides["backbone"] = "DuoRec" if model_of[backbone] in BACKBONE_MODELS else model_of[backbone]
            result = run_recbole_rag(name, dataset, config_file_list, overrides, per_user=True, warn_unread=False)
            result["model"] = label
            checkpoints[label] = result["saved_model_file"]
            results.append(result)
    # a setting one compared model reads and another does not is the comparison's, not a mistake
    unread = set.intersection(*(set(r["unread_settings"]) for r in results))
    warn_unread_settings(sorted(unread), "no compared model read them")
    table = write_comparison(results, dataset, out_dir, baseline)
    return results, table


def check_seeds(seeds: str | Sequence[int] | None) -> list[int | None]:
    """``seeds`` as a list of distinct integers ([None]: the configured seed, when not given)."""
    if seeds is None:
        return [None]
    if isinstance(seeds, str):
        try:
            seeds = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--seeds must be comma-separated integers such as 2020,2021, got {seeds!r}.") from None
    seeds = [int(s) if isinstance(s, numbers.Integral) and not isinstance(s, bool) else s for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or not all(is_count(s, 0) for s in seeds):
        raise ConfigError(f"seeds must be distinct integers >= 0 such as 2020,2021, got {seeds!r}.")
    return seeds
