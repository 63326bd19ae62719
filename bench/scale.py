"""Scale: the memory bank at 10^5..10^7 entries, and training time against dataset size.

    python -m bench.scale [--sizes=100000,1000000,10000000] [--data_path=../shared/datasets]
                          [--hnsw_budget_s=300] [--indexes=flat,ivf,hnsw] [--factors=2,4] [--skip_training]

Bank: synthetic 64-d keys drawn around 1,000 Gaussian cluster centres (user vectors cluster by
taste; uniform data would make every index look alike), 200 held-out queries from the same
mixture. Per size and index (flat = exact, ivf = IVF-Flat with the lists and probes MemoryBank
chooses from the size, hnsw = HNSW M 32 efSearch 64; MemoryBank's defaults): build (``add``)
time, query latency at K=10 (one query at a time, median; and per query in a batch of 200),
recall@10 against the flat index, and the resident memory the bank added. An HNSW build whose
time, extrapolated from the size before, exceeds ``--hnsw_budget_s`` is skipped and its
extrapolated build time given as such.

Training: seconds per batch (median of a few batches) x batches per epoch for RecBole's SASRec
and our DuoRec on ml-100k, amazon-beauty and Beauty copied 2x and 4x (disjoint copies of its
users and items: the same sequence-length distribution at 2x/4x users, items and interactions).
Writes ``results/scale.md``, ``.csv`` and ``scale.png``.
"""

import gc
import math
import os
import shutil
import tempfile
import time

import numpy as np

from bench.report import machine, markdown_table, write_report
from bench.speed import median_time, rss_mib, train_step
from recbole_rag.errors import CommandParser, command
from recbole_rag.files import atomic_path

DIM, K, N_QUERIES, N_CENTRES = 64, 10, 200, 1000
INDEXES = ("flat", "ivf", "hnsw")
CHUNK = 1_000_000


def clustered(n, seed, centres, spread=0.3):
    """n points of a Gaussian mixture around ``centres`` (standard deviation ``spread`` x the
    centres' scale: 0.3 gives well-separated clusters, 1.0 overlapping ones)."""
    rng = np.random.default_rng(seed)
    points = centres[rng.integers(0, len(centres), n)]
    points += spread * rng.standard_normal(points.shape, dtype=np.float32)
    return points


def build_bank(index_type, n, centres, spread):
    """A MemoryBank of n keys added in chunks (data made on the fly); (bank, seconds, MiB)."""
    from recbole_rag.memory import MemoryBank
    from recbole_rag.memory.bank import auto_nlist

    gc.collect()
    before = rss_mib()
    # added in chunks (the data is made on the fly), so the lists are set from n as a bank added
    # in one go sets them itself; nprobe follows from nlist
    nlist = auto_nlist(n) if index_type == "ivf" else None
    bank = MemoryBank(DIM, index_type=index_type, metric="ip", nlist=nlist)
    seconds = 0.0
    for start in range(0, n, CHUNK):
        keys = clustered(min(CHUNK, n - start), start + 1, centres, spread)
        began = time.perf_counter()
        bank.add(keys, np.arange(start, start + len(keys)))
        seconds += time.perf_counter() - began
        del keys
    gc.collect()
    return bank, seconds, rss_mib() - before


def latency(bank, queries):
    """(median ms of one query at a time, ms per query in one batch) at K."""
    single = []
    for q in queries[:50]:
        began = time.perf_counter()
        bank.search(q[None], K)
        single.append(time.perf_counter() - began)
    began = time.perf_counter()
    bank.search(queries, K)
    return 1000 * float(np.median(single)), 1000 * (time.perf_counter() - began) / len(queries)


def recall_at_k(ids, truth):
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(ids, truth)]))


def bench_banks(sizes, hnsw_budget_s, spread=0.3, log=print, indexes=INDEXES):
    rows = []
    centres = np.random.default_rng(0).standard_normal((N_CENTRES, DIM), dtype=np.float32)
    queries = clustered(N_QUERIES, 12345, centres, spread)
    hnsw_last = None  # (seconds per entry, entries) of the last HNSW build, for the extrapolation
    for n in sizes:
        truth = None
        for index_type in indexes:
            if index_type == "hnsw" and hnsw_last is not None:
                rate, built_n = hnsw_last
                estimate = rate * n * math.log(n) / math.log(built_n)
                if estimate > hnsw_budget_s:
                    rows.append(
                        dict(
                            n=n,
                            index=index_type,
                            build_s=estimate,
                            status="skipped",
                            note=f"extrapolated build {estimate:.0f} s (n log n from {built_n:,}) "
                            f"> --hnsw_budget_s={hnsw_budget_s:.0f}",
                        )
                    )
                    log(rows[-1])
                    continue
            bank, build_s, mib = build_bank(index_type, n, centres, spread)
            settings = f"nlist {bank.params['nlist']}, nprobe {bank.params['nprobe']}" if index_type == "ivf" else ""
            one_ms, batch_ms = latency(bank, queries)
            ids = bank.search(queries, K)[3]
            if truth is None:
                truth = ids  # flat comes first: the exact answer
            rows.append(
                dict(
                    n=n,
                    index=index_type,
                    build_s=build_s,
                    query_ms=one_ms,
                    batch_query_ms=batch_ms,
                    recall=recall_at_k(ids, truth),
                    memory_mib=mib,
                    status="measured",
                    note=settings,
                )
            )
            log(rows[-1])
            if index_type == "hnsw":
                hnsw_last = (build_s / n, n)
            del bank
            gc.collect()
    return rows


def copy_dataset(source_dir, name, factor, out_dir):
    """``name`` copied ``factor`` times with disjoint user and item ids -> out_dir/<name>-x<factor>."""
    new_name = f"{name}-x{factor}"
    os.makedirs(os.path.join(out_dir, new_name), exist_ok=True)
    with open(os.path.join(source_dir, name, f"{name}.inter"), encoding="utf-8") as f:
        header, lines = f.readline(), f.read().splitlines()
    columns = [c.split(":")[0] for c in header.rstrip("\n").split("\t")]
    user_col, item_col = columns.index("user_id"), columns.index("item_id")
    with open(os.path.join(out_dir, new_name, f"{new_name}.inter"), "w", encoding="utf-8") as out:
        out.write(header)
        for copy in range(factor):
            for line in lines:
                cells = line.split("\t")
                cells[user_col] = f"{cells[user_col]}_{copy}"
                cells[item_col] = f"{cells[item_col]}_{copy}"
                out.write("\t".join(cells) + "\n")
    return new_name


def time_training(dataset, data_path, batches, log=print):
    """{model: (s/batch, batches per epoch)} and the number of training rows, on one dataset."""
    from recbole.data import data_preparation
    from recbole.utils import init_seed

    from recbole_rag import Config, get_trainer
    from recbole_rag.data import load_dataset
    from recbole_rag.registry import model_class

    common = {
        "data_path": data_path,
        "show_progress": False,
        "state": "ERROR",
        "train_batch_size": 256,
        # the copies have no properties/dataset YAML; apply Beauty's 5-core filter to all alike
        "user_inter_num_interval": "[5,inf)",
        "item_inter_num_interval": "[5,inf)",
    }
    config = Config("SASRec", dataset, config_dict=common)
    init_seed(config["seed"], True)
    train, _, _ = data_preparation(config, load_dataset(config))
    timings = {}
    for model_name in ("SASRec", "DuoRec"):
        model_config = Config(model_name, dataset, config_dict=common)
        init_seed(config["seed"], True)
        model = model_class(model_config)(model_config, train.dataset)
        trainer = get_trainer(model_config["MODEL_TYPE"], model_name)(model_config, model)
        model.train()
        timings[model_name] = median_time(train_step(model, trainer.optimizer), batches, train)
        log(f"{dataset} {model_name}: {timings[model_name]:.3f} s/batch x {len(train)} batches")
    return timings, len(train), train.dataset.item_num - 1


def bench_training(data_path, factors, batches, log=print):
    rows = []
    work = tempfile.mkdtemp(prefix="scale-data-")
    try:
        datasets = [("ml-100k", None), ("amazon-beauty", data_path)]
        datasets += [(copy_dataset(data_path, "amazon-beauty", f, work), work) for f in factors]
        for name, path in datasets:
            timings, n_batches, n_items = time_training(name, path or "dataset/", batches, log)
            for model_name, per_batch in timings.items():
                rows.append(
                    dict(
                        dataset=name,
                        model=model_name,
                        items=n_items,
                        batches=n_batches,
                        s_per_batch=per_batch,
                        s_per_epoch=per_batch * n_batches,
                    )
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def plot(bank_rows, train_rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for index_type in INDEXES:
        measured = [r for r in bank_rows if r["index"] == index_type and r["status"] == "measured"]
        skipped = [r for r in bank_rows if r["index"] == index_type and r["status"] == "skipped"]
        (line,) = axes[0].plot([r["n"] for r in measured], [r["build_s"] for r in measured], "o-", label=index_type)
        if skipped:
            axes[0].plot(
                [measured[-1]["n"]] + [r["n"] for r in skipped],
                [measured[-1]["build_s"]] + [r["build_s"] for r in skipped],
                "x--",
                color=line.get_color(),
                label=f"{index_type} (extrapolated)",
            )
        axes[1].plot([r["n"] for r in measured], [r["query_ms"] for r in measured], "o-", label=index_type)
    for ax, label in ((axes[0], "build (add) time, s"), (axes[1], "query latency at K=10, ms (one query)")):
        ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel("memory bank entries (64-d)")
        ax.set_ylabel(label), ax.legend(), ax.grid(alpha=0.3)
    for model_name in sorted({r["model"] for r in train_rows}):
        rows = [r for r in train_rows if r["model"] == model_name]
        axes[2].plot([r["batches"] * 256 for r in rows], [r["s_per_epoch"] for r in rows], "o-", label=model_name)
        for r in rows:
            axes[2].annotate(r["dataset"], (r["batches"] * 256, r["s_per_epoch"]), fontsize=7)
    axes[2].set_xlabel("training sequences per epoch"), axes[2].set_ylabel("est. s per epoch")
    axes[2].set_xscale("log"), axes[2].set_yscale("log"), axes[2].legend(), axes[2].grid(alpha=0.3)
    fig.suptitle(f"recbole-rag scale ({machine()})", fontsize=9)
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp_path:
        fig.savefig(tmp_path, dpi=110)


def _f(value, digits):
    return "" if value is None else f"{value:.{digits}f}"


def write_results(bank_rows, train_rows, out_dir, spread=0.3, name="scale"):
    header = [
        "entries",
        "index",
        "build s",
        "query ms (one)",
        "query ms (batch of 200)",
        "recall@10 vs flat",
        "memory MiB",
        "status",
    ]
    rows = [
        [
            f"{r['n']:,}",
            r["index"],
            _f(r["build_s"], 2),
            _f(r.get("query_ms"), 3),
            _f(r.get("batch_query_ms"), 3),
            _f(r.get("recall"), 3),
            _f(r.get("memory_mib"), 0),
            r["status"] + (f": {r['note']}" if r["note"] else ""),
        ]
        for r in bank_rows
    ]
    csv_header = [
        "part",
        "size",
        "variant",
        "build_s",
        "query_ms",
        "batch_query_ms",
        "recall_at_10",
        "memory_mib",
        "status",
        "items",
        "batches",
        "s_per_batch",
        "s_per_epoch",
    ]
    csv_rows = [
        [
            "bank",
            r["n"],
            r["index"],
            r["build_s"],
            r.get("query_ms"),
            r.get("batch_query_ms"),
            r.get("recall"),
            r.get("memory_mib"),
            r["status"] + (f": {r['note']}" if r["note"] else ""),
        ]
        + [""] * 4
        for r in bank_rows
    ]
    csv_rows += [
        ["training", r["dataset"], r["model"]]
        + [""] * 6
        + [r["items"], r["batches"], r["s_per_batch"], r["s_per_epoch"]]
        for r in train_rows
    ]
    notes = [
        f"Bank: clustered Gaussian 64-d keys ({N_CENTRES} centres, spread {spread}), {N_QUERIES} held-out "
        f"queries, K={K}, "
        "inner product; memory = resident memory the bank added (the flat bank keeps its keys beside the "
        "index, so it holds them twice; ivf and hnsw hold each key once). ivf: lists and probes as the bank "
        "chooses them from its size when unset (nlist ~ 4 sqrt(n), nprobe ~ sqrt(nlist) / 2; an HNSW graph "
        "over the centroids from 4096 lists)."
    ]
    if train_rows:
        train_table = markdown_table(
            ["dataset", "model", "items", "batches/epoch", "s/batch", "est. s/epoch"],
            [
                [
                    r["dataset"],
                    r["model"],
                    f"{r['items']:,}",
                    f"{r['batches']:,}",
                    _f(r["s_per_batch"], 3),
                    _f(r["s_per_epoch"], 0),
                ]
                for r in train_rows
            ],
        )
        notes.append(
            "Training time against dataset size (batch 256; s/batch median of a few batches x batches):\n\n"
            + train_table
            + "\n"
        )
    table = write_report(
        os.path.join(out_dir, name), "Scale: memory bank and training time", header, rows, csv_header, csv_rows, notes
    )
    plot(bank_rows, train_rows, os.path.join(out_dir, f"{name}.png"))
    return table


def main(argv=None):
    return command(lambda: _main(argv))


def _main(argv):
    parser = CommandParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument("--hnsw_budget_s", type=float, default=300.0)
    parser.add_argument("--indexes", default=",".join(INDEXES), help="flat (the exact answer) and any of ivf, hnsw")
    parser.add_argument("--data_path", default="../shared/datasets", help="folder holding amazon-beauty/")
    parser.add_argument("--factors", default="2,4", help="copies of amazon-beauty to time training on")
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--spread", type=float, default=0.3, help="cluster spread of the synthetic keys")
    parser.add_argument("--skip_training", action="store_true")
    parser.add_argument("--name", default="scale", help="results/<name>.md, .csv, .png")
    parser.add_argument("--out_dir", default="results")
    args = parser.parse_args(argv)
    try:
        sizes = sorted(int(float(s)) for s in args.sizes.split(","))
        factors = [int(f) for f in args.factors.split(",") if f.strip()]
    except (ValueError, OverflowError):
        parser.error("--sizes and --factors take comma-separated numbers, e.g. --sizes=1e5,1e6")
    if not sizes or min(sizes) < 2 * 1024:
        parser.error("every size must be >= 2048 (the indexes need keys to train on and to search)")
    indexes = [i.strip() for i in args.indexes.split(",") if i.strip()]
    if indexes[:1] != ["flat"] or not set(indexes) <= set(INDEXES) or len(set(indexes)) != len(indexes):
        parser.error(f"--indexes must start with flat (the exact answer) and name each of {', '.join(INDEXES)} once")
    import recbole_rag  # noqa: F401  (compat shims before RecBole)

    bank_rows = bench_banks(sizes, args.hnsw_budget_s, args.spread, indexes=indexes)
    train_rows = [] if args.skip_training else bench_training(args.data_path, factors, args.batches)
    print(write_results(bank_rows, train_rows, args.out_dir, args.spread, args.name))


if __name__ == "__main__":
    main()
