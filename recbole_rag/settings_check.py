"""One check of the settings a run computes with, before anything loads or trains.

Types come from the defaults (recbole_rag.config); this module holds what a type cannot say: the
ranges and the settings that must agree with each other. RecBole checks some of them itself, but
as tracebacks, several only once stage 1 has trained (a faiss setting aborts the process); others
it never checks (``raft_dropout: 1.5`` trains with a negative keep probability). Every message
names the setting, what it must be and what it got.
"""

from __future__ import annotations

import math

from recbole.evaluator.base_metric import TopkMetric
from recbole.evaluator.register import metrics_dict
from recbole.utils import ModelType

from recbole_rag.errors import ConfigError


def _int(least, most=None, none=False):
    def check(value):
        if value is None:
            return none
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= least
        return ok and (most is None or value <= most)

    upper = f" and <= {most}" if most is not None else ""
    return check, f"an integer >= {least}{upper}" + (" or ~" if none else "")


def _number(low, high=None, low_open=False, high_open=True, none=False):
    def check(value):
        if value is None:
            return none
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        above = value > low if low_open else value >= low
        below = high is None or (value < high if high_open else value <= high)
        return above and below

    left, right = "(" if low_open else "[", ")" if high_open or high is None else "]"
    span = f"in {left}{low}, {'inf' if high is None else high}{right}"
    return check, f"a number {span}" + (" or ~" if none else "")


_PROBABILITY = _number(0.0, 1.0)  # a dropout: 1 would drop everything
RANGES = {
    # RecBole's budget and protocol
    "learning_rate": _number(0.0, low_open=True),
    "weight_decay": _number(0.0),
    "epochs": _int(0),
    "stopping_step": _int(0),
    "eval_step": _int(0),  # 0: no validation, a checkpoint every epoch (RecBole's meaning)
    "train_batch_size": _int(1),
    "eval_batch_size": _int(1),
    "seed": _int(0, 2**32 - 1),
    "MAX_ITEM_LIST_LENGTH": _int(1),
    "clip_grad_norm": (lambda v: v is None or isinstance(v, dict), "a mapping such as {'max_norm': 5} or ~"),
    # transformer encoders (SASRec, DuoRec, RaSeRec, ...)
    "hidden_size": _int(1),
    "inner_size": _int(1),
    "n_layers": _int(1),
    "n_heads": _int(1),
    "hidden_dropout_prob": _PROBABILITY,
    "attn_dropout_prob": _PROBABILITY,
    "dropout_prob": _PROBABILITY,
    "layer_norm_eps": _number(0.0, low_open=True),
    # RaSeRec's stage 2 and memory bank
    "raft_epochs": _int(1, none=True),
    "raft_learning_rate": _number(0.0, low_open=True),
    "raft_dropout": _PROBABILITY,
    "raft_train_batch_size": _int(1, none=True),
    "retrieval_k": _int(1),
    "alpha": _number(0.0, 1.0, high_open=False),
    "attn_tau": _number(0.0, low_open=True),
    "memory_nlist": _int(1, none=True),
    "memory_nprobe": _int(1, none=True),
    "memory_hnsw_m": _int(2),
    "memory_ef_search": _int(1),
}
HIDDEN_ACTS = ("gelu", "relu", "swish", "tanh", "sigmoid")  # RecBole's TransformerEncoder's
SEQUENTIAL_LOSSES = ("CE", "BPR", "BCE")  # RecBole's sequential losses, and BCE (recbole_rag.model.bce)


def setting_problems(final, model_type=None, pairwise=False):
    """Messages for the settings in ``final`` that are out of range or disagree."""
    problems = [
        f"{key} must be {wanted}, got {final[key]!r}"
        for key, (ok, wanted) in RANGES.items()
        if key in final and not ok(final[key])
    ]
    if final.get("hidden_size") and final.get("n_heads") and not problems:
        if final["hidden_size"] % final["n_heads"]:
            problems.append(f"hidden_size ({final['hidden_size']}) must be a multiple of n_heads ({final['n_heads']})")
    if "hidden_act" in final and final["hidden_act"] not in HIDDEN_ACTS:
        problems.append(f"hidden_act must be one of {', '.join(HIDDEN_ACTS)}, got {final['hidden_act']!r}")
    problems += _evaluation_problems(final, model_type, pairwise)
    return problems


def _evaluation_problems(final, model_type, pairwise=False):
    problems = []
    topk = final.get("topk")
    topk = [topk] if isinstance(topk, int) and not isinstance(topk, bool) else topk
    if not isinstance(topk, list) or not topk or not all(_int(1)[0](k) for k in topk):
        return [f"topk must be a list of integers >= 1 such as [5, 10, 20], got {final.get('topk')!r}"]
    metrics = final.get("metrics")
    metrics = [metrics] if isinstance(metrics, str) else metrics
    if not isinstance(metrics, list) or not metrics:
        return [f"metrics must be a list of metric names such as ['Recall', 'NDCG'], got {metrics!r}"]
    unknown = [m for m in metrics if not isinstance(m, str) or m.lower() not in metrics_dict]
    if unknown:
        return [f"unknown metric(s) {unknown}: RecBole has {', '.join(sorted(metrics_dict))}"]
    valid = str(final.get("valid_metric", ""))
    name, _, k = valid.lower().partition("@")
    measured = {m.lower() for m in metrics}
    # metrics RecBole reports per cut-off: the top-k ones and those over the top-k lists (ItemCoverage@10)
    needs = set(getattr(metrics_dict.get(name), "metric_need", ()))
    at_k = name in metrics_dict and (issubclass(metrics_dict[name], TopkMetric) or "rec.items" in needs)
    if name not in measured or (at_k and (not k.isdigit() or int(k) not in topk)) or (k and not at_k):
        choices = [f"{m}@{k}" for m in metrics for k in topk][:6]
        problems.append(
            f"valid_metric must be a measured metric (metrics x topk, e.g. {', '.join(choices)}), got {valid!r}"
        )
    if model_type == ModelType.SEQUENTIAL:
        if "loss_type" in final and final["loss_type"] not in SEQUENTIAL_LOSSES:
            problems.append(f"loss_type must be one of {', '.join(SEQUENTIAL_LOSSES)}, got {final['loss_type']!r}")
        order = (final.get("eval_args") or {}).get("order")
        if order not in (None, "TO"):
            problems.append(f"eval_args order must be TO for a sequential model (its next item by time), got {order!r}")
        # a pairwise model (FPMC, SINE, TransRec) learns from sampled negatives whatever loss_type says
        if final.get("loss_type") == "CE" and final.get("train_neg_sample_args") is not None and not pairwise:
            problems.append(
                "train_neg_sample_args must be ~ with loss_type CE (a softmax over all items samples no "
                "negatives); set loss_type: BPR to train on sampled negatives"
            )
        if final.get("loss_type") in ("BPR", "BCE") and final.get("train_neg_sample_args") is None and not pairwise:
            problems.append(
                f"loss_type {final['loss_type']} trains on sampled negatives: set train_neg_sample_args "
                "(e.g. {distribution: uniform, sample_num: 1})"
            )
    return problems


def check_settings(final, model_type=None, pairwise=False):
    """Raise one ConfigError naming every setting that is out of range or disagrees."""
    problems = setting_problems(final, model_type, pairwise)
    if problems:
        raise ConfigError("Invalid setting: " + "; ".join(problems) + ".")
