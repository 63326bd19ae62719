"""Where RaSeRec's gain comes from, on the converged backbone of bench/full_table.py.

    python -m bench.raft_study --dataset=amazon-beauty --data_path=../shared/datasets \
        [--parts=memory,variants] [--key=value ...]

Reads DuoRec and RaSeRec@DuoRec from bench/full_table.py's store (run that first; nothing here
retrains them). Two parts:

- ``memory`` (no training): the RaSeRec@DuoRec model tested with no retrieval (alpha = 1, which
  is its DuoRec backbone), with the bank as trained (training pairs), and with the validation
  pairs added without retraining (``memory_update``, the default); and the long tail: test
  NDCG@10 / Recall@10 of DuoRec and RaSeRec by the training frequency of the target item, users
  in five equal-size groups.
- ``variants``: RAFT again from the same backbone with one setting changed: the reference's IVF
  bank (nlist 128, nprobe 1), stage 1's batch of 256 for RAFT (the reference's is 1024), and a
  second seed. Stored and resumable as in bench/accuracy.py (``results/<dataset>-raft-variants/``).

K and alpha are swept by bench/sensitivity.py with ``--pretrained_path`` at the same backbone.
Writes ``results/<dataset>-raft-bank``, ``-longtail`` (and ``.png``) and ``-raft-variants``
(``.md`` and ``.csv`` each).
"""

import json
import os
import sys

import numpy as np
import torch

from bench.accuracy import Run, newest, row_pattern, run_all
from bench.report import machine, table_parser, write_report
from recbole_rag.cli import parse_overrides
from recbole_rag.errors import ConfigError, command
from recbole_rag.files import atomic_path

PARTS = ("memory", "variants")
GROUPS = 5
VARIANTS = [  # (label, overrides, seed)
    ("IVF nlist 128 nprobe 1", {"memory_index": "ivf", "memory_nlist": 128, "memory_nprobe": 1}, None),
    ("RAFT batch 256", {"raft_train_batch_size": 256}, None),
    ("seed 2021", {}, 2021),
]


def stored_result(store_dir, label, seed):
    """The newest stored result of ``label`` (bench/accuracy.py's file naming), checked."""
    path = newest(store_dir, row_pattern(label, seed) + ".json")
    if not path:
        raise ConfigError(f"no stored {label} (seed {seed}) in {store_dir}: run bench/full_table.py first.")
    with open(path, encoding="utf-8") as f:
        result = json.load(f)
    if not os.path.isfile(result.get("saved_model_file") or ""):
        raise ConfigError(
            f"{label}'s checkpoint '{result.get('saved_model_file')}' is gone: delete "
            f"{result['path']} and run bench/full_table.py again."
        )
    return result


# --- part "memory": test-time banks and the long tail ----------------------------------------
def load_raft_model(checkpoint, dataset, overrides):
    """A RaSeRec model in stage 2 from ``checkpoint``, with the bank of its training pairs."""
    from recbole.data import data_preparation
    from recbole.utils import init_seed

    from recbole_rag import Config, get_trainer
    from recbole_rag.data import load_dataset
    from recbole_rag.registry import model_class
    from recbole_rag.trainer import load_checkpoint

    config = Config("RaSeRec", dataset, config_dict={**overrides, "state": "ERROR"})
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, load_dataset(config))
    model = model_class(config)(config, train.dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], "RaSeRec")(config, model)
    state = load_checkpoint(checkpoint, config["device"])
    model.load_state_dict(state["state_dict"])
    model.load_other_parameter(state.get("other_parameter"))
    trainer.build_memory(train.dataset, show_progress=False)
    model.start_raft()
    model.eval()
    return model, trainer, train, valid, test


@torch.no_grad()
def target_ranks(model, test_data):
    """(rank of each user's target among all items, target item ids), scored as RecBole's
    full-sort evaluation does (padding and history items excluded)."""
    ranks, targets = [], []
    n_items = test_data._dataset.item_num
    for interaction, history_index, positive_u, positive_i in test_data:
        scores = model.full_sort_predict(interaction.to(model.device)).view(-1, n_items)
        scores[:, 0] = -np.inf
        if history_index is not None:
            scores[history_index] = -np.inf
        target = scores[positive_u, positive_i]
        ranks.append((scores[positive_u] > target[:, None]).sum(1).cpu())
        targets.append(positive_i.cpu())
    return torch.cat(ranks).numpy(), torch.cat(targets).numpy()


def metrics_of(ranks, k=10):
    hit = ranks < k
    return {f"recall@{k}": float(hit.mean()), f"ndcg@{k}": float((hit / np.log2(ranks + 2)).mean())}


def popularity_groups(train_dataset, targets, n_groups=GROUPS):
    """Users split into ``n_groups`` equal-size groups by how often their target item is a
    training target (least popular first): [(user positions, min count, max count)]."""
    counts = np.bincount(train_dataset.inter_feat[train_dataset.iid_field].numpy(), minlength=train_dataset.item_num)
    popularity = counts[targets]
    order = np.argsort(popularity, kind="stable")
    return [
        (part, int(popularity[part].min()), int(popularity[part].max())) for part in np.array_split(order, n_groups)
    ]


def bank_of(raft):
    """The training-pair bank a stored RaSeRec run built beside its checkpoint (None if gone)."""
    return newest(os.path.dirname(raft["saved_model_file"]), "*-memory-*.npz")


def memory_part(raft, backbone, dataset, overrides, log=print):
    bank = bank_of(raft)  # reused when there (checked against the model's encoder), else rebuilt
    model, trainer, train, valid, test = load_raft_model(
        raft["saved_model_file"], dataset, {**overrides, "memory_path": bank}
    )
    rows = {}
    alpha = model.alpha
    model.alpha = 1.0  # h~ = h: the frozen DuoRec backbone
    rows["no retrieval (alpha = 1: DuoRec)"] = target_ranks(model, test)
    model.alpha = alpha
    rows["bank as trained (training pairs)"] = target_ranks(model, test)
    added = model.add_to_memory(valid.dataset.inter_feat, trainer.config["eval_batch_size"])
    rows[f"+ {len(added)} validation pairs, no retraining"] = target_ranks(model, test)
    recbole_test = trainer.evaluate(test, load_best_model=False)  # RecBole's evaluator, same bank
    log(f"RecBole's evaluator on the last bank: {recbole_test}")
    bank_rows = [[name] + [f"{v:.4f}" for v in metrics_of(ranks).values()] for name, (ranks, _) in rows.items()]
    bank_rows.append(
        [
            "stored: DuoRec / RaSeRec@DuoRec test",
            f"{backbone['test_result']['recall@10']:.4f} / {raft['test_result']['recall@10']:.4f}",
            f"{backbone['test_result']['ndcg@10']:.4f} / {raft['test_result']['ndcg@10']:.4f}",
        ]
    )
    base_ranks, targets = rows["no retrieval (alpha = 1: DuoRec)"]
    raft_ranks = list(rows.values())[-1][0]
    tail_rows = []
    for i, (users, low, high) in enumerate(popularity_groups(train.dataset, targets, GROUPS)):
        base, ours = metrics_of(base_ranks[users]), metrics_of(raft_ranks[users])
        row = [i + 1, f"{low}-{high}", len(users)]
        for m in ("ndcg@10", "recall@10"):
            row += [f"{base[m]:.4f}", f"{ours[m]:.4f}", f"{(ours[m] / base[m] - 1) * 100:+.1f}%" if base[m] else "n/a"]
        tail_rows.append(row)
    return bank_rows, tail_rows


def plot_long_tail(tail_rows, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    x = np.arange(len(tail_rows))
    for ax, (metric, base_col, ours_col) in zip(axes, (("NDCG@10", 3, 4), ("Recall@10", 6, 7))):
        ax.bar(x - 0.2, [float(r[base_col]) for r in tail_rows], 0.4, label="DuoRec")
        ax.bar(x + 0.2, [float(r[ours_col]) for r in tail_rows], 0.4, label="RaSeRec@DuoRec")
        ax.set_xticks(x, [f"G{r[0]}\n{r[1]}" for r in tail_rows], fontsize=7)
        ax.set_xlabel("target item's training count (least popular group first)")
        ax.set_ylabel(f"test {metric}")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"{title}\n{machine()}", fontsize=9)
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp_path:
        fig.savefig(tmp_path, dpi=110)


# --- part "variants": RAFT with one setting changed -------------------------------------------
def variants_part(backbone, main_raft, dataset, overrides, store_dir, log=print):
    checkpoint = backbone["saved_model_file"]
    rows = [["RaSeRec@DuoRec (full table)", main_raft["settings"]["seed"]] + _result_cells(main_raft)]
    for label, changed, seed in VARIANTS:
        ivf = changed.get("memory_index") == "ivf"
        bank = (
            os.path.join(store_dir, "bank-ivf128.npz")
            if ivf
            else (bank_of(main_raft) or os.path.join(store_dir, "bank-flat.npz"))
        )
        settings = {**overrides, "pretrained_path": checkpoint, "memory_path": bank}
        run = Run(label, "RaSeRec", changed)
        seed = seed or main_raft["settings"]["seed"]
        results, _ = run_all([run], dataset, [seed], settings, store_dir, log=log)
        rows.append([label, seed] + _result_cells(results[label][0]))
    return rows


def _result_cells(result):
    test = result["test_result"]
    return [f"{test[m]:.4f}" for m in ("recall@10", "ndcg@10", "recall@20", "ndcg@20")] + [
        result["epochs_run"],
        result.get("best_epoch"),
        f"{result['train_time_s']:.0f}",
    ]


def build_parser():
    parser = table_parser(__doc__)
    parser.add_argument("--seed", type=int, default=2020, help="the full table's seed")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    return parser


def main(argv=None):
    return command(lambda: _main(argv))


def _main(argv):
    args, rest = build_parser().parse_known_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ConfigError(f"--parts takes a comma-separated subset of {','.join(PARTS)}, got {args.parts!r}.")
    overrides = {"show_progress": False, **parse_overrides(rest)}
    if args.data_path is not None:
        overrides["data_path"] = args.data_path
    full_store = os.path.join(args.out_dir, f"{args.dataset}-full")
    backbone = stored_result(full_store, "DuoRec", args.seed)
    raft = stored_result(full_store, "RaSeRec@DuoRec", args.seed)
    base_path = os.path.join(args.out_dir, args.dataset)
    source = f"DuoRec {backbone['saved_model_file']}, RaSeRec@DuoRec {raft['saved_model_file']} (bench/full_table.py)."
    if "memory" in parts:
        bank_rows, tail_rows = memory_part(raft, backbone, args.dataset, overrides)
        print(
            write_report(
                base_path + "-raft-bank",
                f"RaSeRec@DuoRec on {args.dataset}: the bank at test time",
                ["bank at test time", "recall@10", "ndcg@10"],
                bank_rows,
                notes=["One RAFT model, no retraining between rows.", source],
            )
        )
        print(
            write_report(
                base_path + "-longtail",
                f"Long tail on {args.dataset}: test users in {GROUPS} equal "
                "groups by their target item's training count",
                [
                    "group",
                    "count",
                    "users",
                    "DuoRec N@10",
                    "RaSeRec N@10",
                    "gain N@10",
                    "DuoRec R@10",
                    "RaSeRec R@10",
                    "gain R@10",
                ],
                tail_rows,
                notes=[
                    "Count: how often the item is a training target. RaSeRec with the "
                    "validation pairs in its bank, as tested in the full table.",
                    source,
                ],
            )
        )
        plot_long_tail(
            tail_rows,
            base_path + "-longtail.png",
            f"RaSeRec@DuoRec vs DuoRec on {args.dataset} by target popularity",
        )
    if "variants" in parts:
        rows = variants_part(backbone, raft, args.dataset, overrides, base_path + "-raft-variants")
        print(
            write_report(
                base_path + "-raft-variants",
                f"RAFT variants on {args.dataset} from one DuoRec checkpoint",
                [
                    "variant",
                    "seed",
                    "recall@10",
                    "ndcg@10",
                    "recall@20",
                    "ndcg@20",
                    "epochs",
                    "best epoch",
                    "train s",
                ],
                rows,
                notes=[
                    "Each row changes one setting of the full table's RaSeRec@DuoRec; "
                    "budget: the YAML's (early stopping).",
                    source,
                ],
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
