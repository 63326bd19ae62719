"""One path for every run: Config -> RecBole dataset and dataloaders -> model -> trainer ->
RecBole's evaluator; and ``compare`` for several models under the same settings."""

from __future__ import annotations

import csv
import logging
import os
import time
from logging import getLogger
from typing import Any

from recbole.data import data_preparation
from recbole.utils import init_logger, init_seed, set_color

from recbole_rag.config import Config
from recbole_rag.data import load_dataset
from recbole_rag.errors import ConfigError
from recbole_rag.registry import get_model, get_trainer
from recbole_rag.runtime import tune_cpu
from recbole_rag.trainer.distributed import distributed_trainer
from recbole_rag.trainer.personaliser import personalised


def run_recbole_rag(
    model: str,
    dataset: str,
    config_file_list: list[str] | None = None,
    config_dict: dict[str, Any] | None = None,
    saved: bool = True,
) -> dict[str, Any]:
    """Train and test ``model`` on ``dataset``; returns a dict with the best valid and the test
    results (RecBole's metric names, e.g. ``test_result['ndcg@10']``) and timings."""
    config = Config(model, dataset, config_file_list, config_dict)
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
    model = get_model(config["model"])(config, train_data.dataset).to(config["device"])
    logger.info(model)
    trainer_class = get_trainer(config["MODEL_TYPE"], config["model"])
    if config["personalise"]:  # DR4SR+: the model trains on personalised row weights
        trainer_class = personalised(trainer_class)
    if not config["single_spec"]:  # one of several processes (recbole_rag.distributed)
        trainer_class = distributed_trainer(trainer_class)
    trainer = trainer_class(config, model)

    start = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"]
    )
    train_time = trainer.train_seconds() if hasattr(trainer, "train_seconds") else time.perf_counter() - start
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    epochs_run = max(len(trainer.train_loss_dict), 1)
    return {
        "model": config["model"],
        "dataset": config["dataset"],
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
        **getattr(trainer, "run_info", {}),  # facts a trainer reports, e.g. SRA-CL's semantic source
    }


def _init_run_logger(config):
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


def _log_file(logger):
    """The file RecBole's init_logger is writing this run's log to (None if it writes none)."""
    files = [
        h.baseFilename
        for h in logger.handlers
        if isinstance(h, logging.FileHandler) and getattr(h, "recbole_rag_run", False)
    ]
    return files[-1] if files else None


def comparison_table(results, metrics):
    """Rows of (model, metric values..., relative change of each metric over the first model)."""
    base = results[0]["test_result"]
    rows = []
    for result in results:
        test = result["test_result"]
        values = [test[m] for m in metrics]
        changes = [(test[m] - base[m]) / base[m] * 100 if base[m] else float("nan") for m in metrics]
        rows.append((result["model"], values, changes, result["train_time_s"], result["epochs_run"]))
    return rows


def write_comparison(results, dataset, out_dir="saved"):
    """Write ``<out_dir>/<dataset>-compare.md`` and ``.csv``; return the Markdown table."""
    metrics = [m for m in results[0]["test_result"]]
    rows = comparison_table(results, metrics)
    header = ["model"] + metrics + [f"{m} vs {results[0]['model']}" for m in metrics] + ["train s", "epochs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, values, changes, seconds, epochs in rows:
        cells = [model] + [f"{v:.4f}" for v in values] + [f"{c:+.1f}%" for c in changes]
        lines.append("| " + " | ".join(cells + [f"{seconds:.0f}", str(epochs)]) + " |")
    table = "\n".join(lines)
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, f"{dataset}-compare")
    with open(base + ".md", "w", encoding="utf-8") as f:
        f.write(f"# Test results on {dataset}\n\n{table}\n")
    with open(base + ".csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["model"] + metrics + [f"{m}_change_pct" for m in metrics] + ["train_time_s", "epochs_run"])
        for model, values, changes, seconds, epochs in rows:
            writer.writerow([model] + values + [round(c, 2) for c in changes] + [round(seconds, 1), epochs])
    return table


# Models that can start from another model's checkpoint (``pretrained_path``).
TAKES_BACKBONE = {"RaSeRec"}


def parse_compare_entries(models):
    """``"SASRec,DuoRec,RaSeRec@DuoRec"`` -> [(label, model, backbone label or None)], checked.

    ``M@B`` runs M starting from the checkpoint of B, trained earlier in the same comparison
    (RaSeRec's RAFT on a DuoRec or SASRec backbone, as the reference study does).
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
) -> tuple[list[dict[str, Any]], str]:
    """Run each model with the same data, split, seed and budget; write and return the table."""
    entries = parse_compare_entries(models)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ConfigError(f"out_dir '{out_dir}' is a file: the comparison table needs a folder there.")
    results, checkpoints = [], {}
    for label, name, backbone in entries:
        overrides = dict(config_dict or {})
        if backbone:
            overrides["pretrained_path"] = checkpoints[backbone]
        result = run_recbole_rag(name, dataset, config_file_list, overrides)
        result["model"] = label
        checkpoints[label] = result["saved_model_file"]
        results.append(result)
    table = write_comparison(results, dataset, out_dir)
    return results, table
