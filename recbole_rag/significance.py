"""Is a difference larger than chance? Per-user test results and paired tests over test users.

RecBole reports a metric as the mean over test users of a per-user value; two runs on the same
split are scored on the same users, so their difference is tested pair by pair: the mean
difference, a bootstrap interval over users, and two-sided p-values of the paired t-test and the
Wilcoxon signed-rank test (scipy). ``capture_per_user`` records the per-user values from the very
data RecBole's evaluator sees, so their means are the reported metrics.

Users are paired by token, not by internal id: a run on a regenerated dataset numbers its users
otherwise but is tested on the same users and items.
"""

from __future__ import annotations

import csv
import gzip
import inspect
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from recbole.evaluator.metrics import MAP, MRR, NDCG, Hit, Precision, Recall
from scipy import stats

from recbole_rag.errors import ConfigError
from recbole_rag.files import atomic_path

if TYPE_CHECKING:  # annotations only: this module stays below the trainers and Config
    from recbole.config import Config
    from recbole.data.dataset import Dataset
    from recbole.data.interaction import Interaction
    from recbole.evaluator.collector import DataStruct
    from recbole.trainer import Trainer

# Per-user results: "user" -> tokens (n,), each metric -> values (n,) in the same order.
PerUser = dict[str, np.ndarray]

# RecBole's top-k metrics, each computed per user from the hit matrix ("rec.topk").
_TOPK = {"recall": Recall, "ndcg": NDCG, "hit": Hit, "mrr": MRR, "precision": Precision, "map": MAP}
USER = "user"  # the key of the user tokens in a per-user result
TESTED = ("ndcg@10", "recall@10")  # the metrics a comparison tests unless told otherwise
BOOTSTRAP = 2000  # resamples of the test users behind an interval


@contextmanager
def capture_per_user(trainer: Trainer, dataset: Dataset, into: PerUser) -> Iterator[PerUser]:
    """While the block evaluates with ``trainer``, fill ``into`` with each test user's value of
    every top-k metric in the run's ``metrics`` x ``topk`` (arrays in evaluation order) and the
    users' tokens under ``USER``."""
    config = trainer.config
    uid_field = config["USER_ID_FIELD"]
    users, batches = [], []
    collect, evaluate = trainer.eval_collector.eval_batch_collect, trainer.evaluator.evaluate

    def collect_users(
        scores: torch.Tensor, interaction: Interaction, positive_u: torch.Tensor, positive_i: torch.Tensor
    ) -> None:
        users.append(interaction[uid_field].cpu())
        return collect(scores, interaction, positive_u, positive_i)

    def keep_hits(struct: DataStruct) -> dict[str, float]:
        if "rec.topk" in struct:  # registered only when a top-k metric is measured
            batches.append(struct.get("rec.topk").clone())
        return evaluate(struct)

    trainer.eval_collector.eval_batch_collect, trainer.evaluator.evaluate = collect_users, keep_hits
    try:
        yield into
    finally:
        trainer.eval_collector.eval_batch_collect, trainer.evaluator.evaluate = collect, evaluate
    tokens = np.asarray(dataset.id2token(uid_field, torch.cat(users).numpy()), dtype=str) if users else None
    # one row a user (full ranking, leave-one-out), else no per-user values: a user with several
    # rows (a random split) or a row a candidate (sampled ranking) has no single value to pair
    if batches and len(tokens) == len(batches[-1]) == len(set(tokens)):
        into.update(per_user_metrics(batches[-1], config))
        into[USER] = tokens


def per_user_metrics(hits: torch.Tensor, config: Config) -> dict[str, np.ndarray]:
    """RecBole's hit matrix (users x (max k hits + number of positives)) -> {"ndcg@10": array of
    per-user values, ...} for each top-k metric of the run's ``metrics``, at each k of ``topk``,
    computed by RecBole's own metric classes."""
    topk = [config["topk"]] if isinstance(config["topk"], int) else list(config["topk"])
    pos_index, pos_len = hits[:, :-1].bool().numpy(), hits[:, -1].numpy()
    out = {}
    for name in config["metrics"]:
        metric_class = _TOPK.get(name.lower())
        if metric_class is None:
            continue  # not a per-user top-k metric (e.g. AUC, ItemCoverage): nothing to pair
        metric = metric_class(config)
        takes_len = "pos_len" in inspect.signature(metric.metric_info).parameters
        values = metric.metric_info(pos_index, pos_len) if takes_len else metric.metric_info(pos_index)
        for k in topk:
            out[f"{name.lower()}@{k}"] = values[:, k - 1].astype(np.float64)
    return out


def save_per_user(path: str | os.PathLike, per_user: PerUser) -> None:
    """Per-user results as gzip'd CSV (a user column, then one per metric), written atomically."""
    metrics = [m for m in per_user if m != USER]
    with atomic_path(path) as tmp, gzip.open(tmp, "wt", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([USER, *metrics])
        for i, user in enumerate(per_user[USER]):
            writer.writerow([user, *(f"{per_user[m][i]:.6g}" for m in metrics)])


def load_per_user(path: str | os.PathLike) -> PerUser:
    """What ``save_per_user`` wrote."""
    with gzip.open(path, "rt", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0][0] != USER:
        raise ConfigError(f"'{path}' is not a per-user result file (its first column must be '{USER}').")
    header, body = rows[0], rows[1:]
    out = {USER: np.array([r[0] for r in body], dtype=str)}
    for j, metric in enumerate(header[1:], start=1):
        out[metric] = np.array([float(r[j]) for r in body])
    return out


def paired(a: PerUser, b: PerUser, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The values of ``metric`` of the same users in ``a`` and ``b`` (per-user results), in one
    order; a clear error if they were not tested on the same users."""
    for side in (a, b):
        if metric not in side:
            have = ", ".join(m for m in side if m != USER)
            raise ConfigError(f"{metric} was not measured per user (measured: {have}).")
    if len(a[USER]) != len(b[USER]) or set(a[USER]) != set(b[USER]):
        only = sorted(set(a[USER]) ^ set(b[USER]))[:3]
        raise ConfigError(
            f"The two runs were tested on different users ({len(a[USER])} vs {len(b[USER])}; e.g. "
            f"{', '.join(only)} in one only): a paired test needs the same test split."
        )
    order_b = {user: i for i, user in enumerate(b[USER])}
    index = np.array([order_b[user] for user in a[USER]])
    return a[metric], b[metric][index]


@dataclass(frozen=True)
class PairedTest:
    """B against A on one metric over the same ``users``: B's mean minus A's, its bootstrap
    interval, and two-sided p-values (None where a test is undefined: every pair equal, every
    pair moved by the same amount for the t-test, or a single user)."""

    metric: str
    users: int
    mean_a: float
    mean_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_t: float | None
    p_wilcoxon: float | None
    identical: bool = False  # every pair equal

    @property
    def relative(self) -> float:
        return self.difference / self.mean_a * 100 if self.mean_a else math.nan

    def describe(self) -> str:
        if self.identical:
            return f"{self.metric}: identical on all {self.users} test users (no difference to test)"
        return (
            f"{self.metric}: {self.mean_b:.4f} vs {self.mean_a:.4f}, difference {self.difference:+.4f} "
            f"({self.relative:+.1f}%), 95% CI [{self.ci_low:+.4f}, {self.ci_high:+.4f}], "
            f"p = {format_p(self.p_t)} (paired t), {format_p(self.p_wilcoxon)} (Wilcoxon), {self.users} users"
        )


def format_p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def paired_test(
    values_a: Sequence[float] | np.ndarray,
    values_b: Sequence[float] | np.ndarray,
    metric: str,
    resamples: int = BOOTSTRAP,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedTest:
    """Test the per-user differences ``values_b - values_a`` (same users, same order)."""
    a, b = np.asarray(values_a, dtype=np.float64), np.asarray(values_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ConfigError(f"A paired test needs two equal-length lists of per-user values, got {a.shape}, {b.shape}.")
    diff = b - a
    low, high = bootstrap_interval(diff, resamples, confidence, seed)
    identical = not np.any(diff != 0)
    p_t = p_w = None
    if not identical and len(diff) > 1:
        # every user moved by the same amount: no spread, so the t-test is undefined (Wilcoxon is not)
        if not np.allclose(diff, diff[0], rtol=1e-9, atol=1e-12):
            p_t = float(stats.ttest_rel(b, a).pvalue)
        p_w = float(stats.wilcoxon(diff).pvalue)
    mean_a, mean_b = float(a.mean()), float(b.mean())
    return PairedTest(metric, len(a), mean_a, mean_b, float(diff.mean()), low, high, p_t, p_w, identical)


def bootstrap_interval(
    diff: np.ndarray, resamples: int = BOOTSTRAP, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the mean of ``diff`` over users drawn with replacement."""
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // len(diff))  # bounded memory on large test sets
    for start in range(0, resamples, chunk):
        n = min(chunk, resamples - start)
        means[start : start + n] = diff[rng.integers(0, len(diff), size=(n, len(diff)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def mean_over_runs(per_user_runs: Sequence[PerUser]) -> PerUser:
    """Several runs' per-user results (e.g. seeds) -> one, each user's mean value per metric:
    the pooled test over seeds pairs users on their seed-averaged values."""
    first = per_user_runs[0]
    out = {USER: first[USER]}
    for metric in (m for m in first if m != USER):
        out[metric] = np.mean([paired(first, run, metric)[1] for run in per_user_runs], axis=0)
    return out


def compare_runs(a: PerUser, b: PerUser, metrics: Sequence[str] = TESTED, **kwargs: Any) -> list[PairedTest]:
    """[PairedTest] of per-user results ``b`` against ``a`` on each of ``metrics``."""
    return [paired_test(*paired(a, b, metric), metric, **kwargs) for metric in metrics]


def check_metrics(metrics: Sequence[str], per_user: PerUser) -> list[str]:
    """``metrics`` (names such as ndcg@10), each one measured per user."""
    if USER not in per_user:
        raise ConfigError(
            "These runs have no per-user values: they need full ranking with one test row per user "
            "(eval_args mode full and a leave-one-out split, as properties/overall.yaml sets)."
        )
    missing = [m for m in metrics if m not in per_user]
    if missing:
        have = ", ".join(m for m in per_user if m != USER)
        raise ConfigError(f"Cannot test {', '.join(missing)}: the runs measured {have} (set metrics/topk).")
    return list(metrics)


def per_user_path(result_path: str) -> str:
    """Where a stored result's per-user values lie: beside it, ``<name>.per-user.csv.gz``."""
    root, _ = os.path.splitext(result_path)
    return root + ".per-user.csv.gz"
