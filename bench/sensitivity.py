"""Sensitivity of RaSeRec to the number of retrieved memories K and the fusion weight alpha
(the reference study's Figure 2): test NDCG@10 and Recall@10 per setting.

    python -m bench.sensitivity [--dataset=ml-100k] [--backbone=SASRec --backbone_epochs=3 |
        --pretrained_path=CKPT] [--raft_epochs=3] [--ks=1,5,10,20,50] [--alphas=0.1,0.3,0.5,0.7,0.9]

One backbone is trained once (or taken from ``--pretrained_path``), its memory bank is built by
the first RAFT run and reused by the others (``memory_path``), then RAFT runs per setting: K swept
at alpha = ``--alpha``, alpha swept at K = ``--k``. Every run is stored as in bench/accuracy.py
(resumable). Writes ``results/<dataset>-sensitivity.md``, ``.csv`` and ``.png``.
"""

import contextlib
import os
import sys

import numpy as np

from bench.accuracy import Run, run_all
from bench.report import machine, write_report
from recbole_rag.cli import parse_overrides
from recbole_rag.errors import CommandParser, ConfigError, command
from recbole_rag.files import atomic_path


def parse_list(text, kind, name, low, high):
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--{name} takes comma-separated {kind.__name__}s, got {text!r}.") from None
    if not values or not all(low <= v <= high for v in values):
        raise ConfigError(f"--{name} values must lie in [{low}, {high}], got {text!r}.")
    return values


def settings_grid(ks, alphas, k, alpha):
    """(label, K, alpha) of the K sweep at ``alpha`` and the alpha sweep at ``k``, each once."""
    grid = [(f"K={kk}", kk, alpha) for kk in ks]
    grid += [(f"alpha={a}", k, a) for a in alphas if (k, a) not in {(kk, aa) for _, kk, aa in grid}]
    return grid


def backbone_checkpoint(args, overrides, store_dir, log=print):
    if args.pretrained_path:
        if not os.path.isfile(args.pretrained_path):
            raise ConfigError(f"--pretrained_path '{args.pretrained_path}' does not exist.")
        return args.pretrained_path, None
    run = Run(f"backbone-{args.backbone}", args.backbone)
    results, _ = run_all(
        [run], args.dataset, [args.seed], {**overrides, "epochs": args.backbone_epochs}, store_dir, log=log
    )
    result = results[run.label][0]
    if not os.path.isfile(result["saved_model_file"] or ""):
        raise ConfigError(
            f"the backbone checkpoint '{result['saved_model_file']}' is gone: delete {result['path']} "
            "to train the backbone again."
        )
    return result["saved_model_file"], result


def plot(rows, backbone, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (swept, fixed) in zip(axes, (("K", "alpha"), ("alpha", "K"))):
        chosen = sorted((r for r in rows if r["swept"] == swept), key=lambda r: r[swept])
        for metric, style in (("ndcg@10", "o-"), ("recall@10", "s-")):
            (line,) = ax.plot([r[swept] for r in chosen], [r[metric] for r in chosen], style, label=f"RaSeRec {metric}")
            if backbone:
                ax.axhline(backbone[metric], ls="--", color=line.get_color(), alpha=0.6, label=f"backbone {metric}")
        if swept == "K":
            ax.set_xscale("log")
        ax.set_xlabel(f"{swept} ({fixed} = {chosen[0][fixed] if chosen else ''})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("test metric")
    fig.suptitle(f"{title}\n{machine()}", fontsize=9)
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp_path:
        fig.savefig(tmp_path, dpi=110)


@contextlib.contextmanager
def share_neighbour_retrieval(max_k):
    """While the block runs, retrieve each training pair's top-``max_k`` memories once for the
    whole grid.

    With a frozen backbone RAFT first retrieves the top-K neighbours of every training pair from
    the exact (flat) bank; the top-K of that search are the first K of its top-``max_k``, so
    settings that share the bank share one retrieval, sliced to their K. Only where the bank is a
    flat faiss one; RaSeRec's own retrieval is back when the block ends.
    """
    from recbole_rag.memory import MemoryBank
    from recbole_rag.model.sequential_recommender.raserec import RaSeRec

    retrieve = RaSeRec.cache_training_neighbours
    shared = {}

    def cache_training_neighbours(model, entry_stop, chunk_size=1024, show_progress=False):
        if not isinstance(model.memory, MemoryBank) or model.memory.index_type != "flat":
            return retrieve(model, entry_stop, chunk_size, show_progress)
        bank_id = (len(model.memory), model.memory.entries(np.arange(min(8, len(model.memory))))[0].tobytes())
        if bank_id not in shared:
            k, model.retrieval_k = model.retrieval_k, max(max_k, model.retrieval_k)
            retrieve(model, entry_stop, chunk_size, show_progress)
            model.retrieval_k, shared[bank_id] = k, model.train_neighbours
        model.train_neighbours = shared[bank_id][:, : model.retrieval_k]

    RaSeRec.cache_training_neighbours = cache_training_neighbours
    try:
        yield
    finally:
        RaSeRec.cache_training_neighbours = retrieve


def build_parser():
    parser = CommandParser(
        description=__doc__.split("\n\n")[0],
        allow_abbrev=False,
        epilog="Any other --key=value overrides a setting of every run.",
    )
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--backbone", default="SASRec", help="SASRec or DuoRec (trained once)")
    parser.add_argument("--backbone_epochs", type=int, default=3)
    parser.add_argument("--pretrained_path", default=None, help="a backbone checkpoint: skip its training")
    parser.add_argument("--raft_epochs", type=int, default=3)
    parser.add_argument("--ks", default="1,5,10,20,50")
    parser.add_argument("--alphas", default="0.1,0.3,0.5,0.7,0.9")
    parser.add_argument("--k", type=int, default=20, help="K while alpha is swept")
    parser.add_argument("--alpha", type=float, default=0.5, help="alpha while K is swept")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--out_dir", default="results")
    return parser


def main(argv=None):
    return command(lambda: _main(argv))


def _main(argv):
    args, rest = build_parser().parse_known_args(argv)
    if args.backbone not in ("SASRec", "DuoRec"):
        raise ConfigError(f"--backbone must be SASRec or DuoRec, got {args.backbone!r}.")
    if args.backbone_epochs < 1 or args.raft_epochs < 1:
        raise ConfigError("--backbone_epochs and --raft_epochs must be >= 1.")
    ks = parse_list(args.ks, int, "ks", 1, 10_000)
    alphas = parse_list(args.alphas, float, "alphas", 0.0, 1.0)
    parse_list(str(args.k), int, "k", 1, 10_000), parse_list(str(args.alpha), float, "alpha", 0.0, 1.0)
    overrides = {"show_progress": False, **parse_overrides(rest)}
    if args.data_path:
        overrides["data_path"] = args.data_path
    store = os.path.join(args.out_dir, f"{args.dataset}-sensitivity")
    checkpoint, backbone = backbone_checkpoint(args, overrides, store)
    # the bank of this backbone, built by the first RAFT run, read by the others
    bank = os.path.join(
        os.path.dirname(os.path.abspath(checkpoint)),
        f"bank-{os.path.splitext(os.path.basename(checkpoint))[0]}.npz",
    )
    raft = {**overrides, "pretrained_path": checkpoint, "memory_path": bank, "raft_epochs": args.raft_epochs}
    grid = settings_grid(ks, alphas, args.k, args.alpha)
    runs = [Run(label, "RaSeRec", {"retrieval_k": kk, "alpha": a}) for label, kk, a in grid]
    with share_neighbour_retrieval(max(kk for _, kk, _ in grid)):
        results, _ = run_all(runs, args.dataset, [args.seed], raft, store)
    rows = []
    for label, kk, a in grid:
        test = results[label][0]["test_result"]
        swept = "K" if label.startswith("K=") else "alpha"
        rows.append({"swept": swept, "K": kk, "alpha": a, **test})
        if label == f"K={args.k}" and a == args.alpha:  # the shared setting belongs to both sweeps
            rows.append({"swept": "alpha", "K": kk, "alpha": a, **test})
    base = backbone["test_result"] if backbone else None
    header = ["swept", "K", "alpha", "NDCG@10", "Recall@10", "NDCG@20", "Recall@20"]
    table_rows = [
        [r["swept"], r["K"], r["alpha"]] + [f"{r[m]:.4f}" for m in ("ndcg@10", "recall@10", "ndcg@20", "recall@20")]
        for r in rows
    ]
    if base:
        table_rows.append(
            [f"backbone {args.backbone}", "", ""]
            + [f"{base[m]:.4f}" for m in ("ndcg@10", "recall@10", "ndcg@20", "recall@20")]
        )
    notes = [
        f"Backbone: {checkpoint}"
        + (f" ({args.backbone}, {args.backbone_epochs} epochs)" if backbone else "")
        + f"; RAFT {args.raft_epochs} epochs per setting, seed {args.seed}; "
        + f"bank {os.path.relpath(bank)} shared by all settings."
    ]
    base_path = os.path.join(args.out_dir, f"{args.dataset}-sensitivity")
    table = write_report(
        base_path,
        f"RaSeRec sensitivity to K and alpha on {args.dataset}",
        header,
        table_rows,
        ["swept", "K", "alpha"] + list(rows[0])[3:],
        [list(r.values()) for r in rows],
        notes,
    )
    plot(rows, base, base_path + ".png", f"RaSeRec on {args.dataset}: K (alpha={args.alpha}) and alpha (K={args.k})")
    print(table + "\n\n" + "\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
