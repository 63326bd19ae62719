"""RaSeRec's RAFT on backbones other than SASRec and DuoRec: each RecBole model to early stopping,
then RAFT on it (``--backbone=<model>``), beside the SASRec and DuoRec rows, each gain tested
against its backbone over the same test users.

    python -m bench.any_backbone --dataset=amazon-beauty --data_path=DATA_PATH [--run] [--per_user]

Rows are bench.accuracy rows (seed 2020, properties/overall.yaml's budget), stored under
<out_dir>/<dataset>-any-backbone/ and read back (SASRec's and DuoRec's from the full table's store,
<out_dir>/<dataset>-full/); without ``--run`` the table is written from the rows stored, with it
the missing ones train first (resumable). ``--per_user`` evaluates a stored checkpoint that has no
per-user values. Writes <out_dir>/<dataset>-any-backbone.md and .csv.
"""

import os
import sys

from bench.accuracy import run_all, select_runs
from bench.report import machine, markdown_table, table_parser
from bench.table1 import MD_HEADER, SEED, add_run_arguments, table_entries, table_rows, write_csv
from recbole_rag.cli import parse_overrides
from recbole_rag.errors import command
from recbole_rag.files import atomic_path

BACKBONES = ["SASRec", "DuoRec", "GRU4Rec", "NARM", "LightSANs", "FEARec"]
# (name in the table, bench.accuracy row, the row it improves on), in the table's order
TABLE = [row for name in BACKBONES for row in ((name, name, None), (f"RaSeRec@{name}", f"RaSeRec@{name}", name))]


def collect(dataset, out_dir, train=False, backfill=False, log=print, settings=None):
    """{table name: (stored row, per-user values or None)} and {name: why missing}; ``settings``:
    overrides of every row (data_path among them)."""
    store_dir = os.path.join(out_dir, f"{dataset}-any-backbone")
    read_dirs = [os.path.join(out_dir, f"{dataset}-full")]
    overrides = {"show_progress": False, **(settings or {})}
    runs = select_runs([label for _, label, _ in TABLE])
    results, skipped = run_all(runs, dataset, [SEED], overrides, store_dir, log=log, read_dirs=read_dirs, train=train)
    return table_entries(TABLE, results, skipped, dataset, store_dir, log, backfill)


def write_table(dataset, md, out, out_dir, settings=None):
    """<out_dir>/<dataset>-any-backbone.md and .csv; returns the Markdown."""
    given = ", ".join(f"{k}={v}" for k, v in sorted((settings or {}).items()))
    text = "\n".join(
        [
            f"# RaSeRec's RAFT on any backbone: {dataset}",
            "",
            f"Measured on {machine()}. Seed {SEED}, properties/overall.yaml's budget (early stopping on valid "
            "NDCG@10), leave-one-out, full ranking, RecBole's evaluator. RaSeRec@B: B trained to early stopping "
            "(RecBole's model and defaults; DuoRec: ours), then RAFT on it with its weights frozen and a bank of "
            "all training pairs. Each RAFT row is tested against its backbone over the same test users: "
            "difference of means, 95% bootstrap interval, two-sided paired t-test p."
            + (f" Every run with {given}." if given else ""),
            "",
            f"Reproduce: `python -m bench.any_backbone --dataset={dataset} --data_path=DATA_PATH --run --per_user`.",
            "",
            markdown_table(MD_HEADER, md),
        ]
    )
    stem = os.path.join(out_dir, f"{dataset}-any-backbone")
    with atomic_path(stem + ".md") as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    write_csv(stem + ".csv", out)
    return text


def build_parser():
    return add_run_arguments(table_parser(__doc__))


def main(argv=None):
    return command(lambda: _main(argv))


def _main(argv):
    args, rest = build_parser().parse_known_args(argv)
    settings = parse_overrides(rest)  # rows of their own, as bench.accuracy stores them
    if args.data_path:
        settings["data_path"] = args.data_path
    rows, missing = collect(args.dataset, args.out_dir, args.run, args.per_user, settings=settings)
    md, out = table_rows(args.dataset, rows, missing, TABLE, published={})
    print(write_table(args.dataset, md, out, args.out_dir, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
