"""The reference study's Table 1 (regenerate -> backbone -> RAFT with a bank of all pairs) on
amazon-beauty, amazon-toys-games and amazon-sports-outdoors: ours beside the published numbers,
each improvement over its base with a paired test over the same test users.

    python -m bench.table1 --data_path=../shared/datasets [--datasets=amazon-toys-games] [--run]
        [--per_user] [--key=value ...]

Rows are bench.accuracy rows (seed 2020, properties/overall.yaml's budget), stored and read back
as that script stores them. Without ``--run`` the table is written from the rows already stored
(the others are named as not run yet); with it the missing rows train first, in the order
below, each resuming from its last checkpoint. ``--per_user`` evaluates the checkpoint of a
stored row that has no per-user values yet (rows stored before they were kept), so that every
improvement has its p-value. Any other --key=value is a setting of every row (rows of their own,
as bench.accuracy stores them). Writes <out_dir>/table1.md and .csv; the stores lie under
--out_dir (Beauty's rows in the DR4SR and full tables' stores).
"""

import csv
import os
import sys

import numpy as np

from bench.accuracy import ITEM_TABLE_ROW, METRICS, RUNS, paired_cell, regenerated_dataset, run_all, select_runs
from bench.report import machine, markdown_table, table_parser
from recbole_rag.cli import parse_overrides
from recbole_rag.errors import ConfigError, command
from recbole_rag.files import atomic_path
from recbole_rag.inference import evaluate
from recbole_rag.regeneration.writer import ADDED_REGEN_KEYS
from recbole_rag.significance import compare_runs, load_per_user, per_user_path, save_per_user

DATASETS = ["amazon-beauty", "amazon-toys-games", "amazon-sports-outdoors"]
SEED = 2020
# The rows, in the order they train: RaSeRec's cheap RAFT rows right after their backbones.
ORDER = [
    "DuoRec",
    "RaSeRec@DuoRec",
    "SASRec",
    "RaSeRec@SASRec",
    "SASRec+regen",
    "SASRec+regen+RAFT(pairs)",
    "DuoRec+regen",
    "DuoRec+regen+RAFT(pairs)",
]
# (name in the table, bench.accuracy row, the row it improves on or None), in the table's order.
TABLE = [
    ("SASRec", "SASRec", None),
    ("SASRec + pipeline", "SASRec+regen+RAFT(pairs)", "SASRec"),
    ("RaSeRec@SASRec", "RaSeRec@SASRec", "SASRec"),
    ("DuoRec", "DuoRec", None),
    ("DuoRec + pipeline", "DuoRec+regen+RAFT(pairs)", "DuoRec"),
    ("RaSeRec@DuoRec", "RaSeRec@DuoRec", "DuoRec"),
]
# The regeneration recipe of every dataset's rows: the one Beauty's rows ran with (the source's
# items only, the original rows once). DR4SR's reference recipe, the Regenerator's defaults since
# (source in BOS/EOS, the original rows twice), is measured against it in docs/dr4sr.md.
RECIPE = {"regen_source_tokens": False, "regen_original_copies": 1}
# Where each dataset's rows are stored (and their regenerated sets written), and stores read too.
# Beauty's rows were run for the DR4SR and full tables before this one.
STORES = {  # paths under --out_dir
    "amazon-beauty": ("dr4sr-full/amazon-beauty-accuracy", "dr4sr-full/regen-data", ["amazon-beauty-full"]),
}


def store_of(dataset, out_dir):
    """(store_dir, regen_data_path, read_dirs) of ``dataset``'s rows under ``out_dir``."""
    store, regen, read = STORES.get(dataset, (f"table1/{dataset}-accuracy", "table1/regen-data", []))
    return os.path.join(out_dir, store), os.path.join(out_dir, regen), [os.path.join(out_dir, d) for d in read]


# The study's Table 1 (R@5, R@10, R@20, N@5, N@10, N@20), and the RaSeRec paper's own rows.
_STUDY = "three-stage study, Table 1"
PUBLISHED = {
    "amazon-beauty": {
        "SASRec": (_STUDY, [0.0555, 0.0819, 0.1162, 0.0319, 0.0405, 0.0491]),
        "SASRec + pipeline": (_STUDY, [0.0578, 0.0844, 0.1188, 0.0349, 0.0434, 0.0521]),
        "DuoRec": (_STUDY, [0.0570, 0.0860, 0.1212, 0.0359, 0.0452, 0.0541]),
        "DuoRec + pipeline": (_STUDY, [0.0578, 0.0864, 0.1229, 0.0378, 0.0470, 0.0562]),
        "RaSeRec@DuoRec": ("RaSeRec paper", [None, 0.0860, None, None, 0.0463, None]),
    },
    "amazon-toys-games": {
        "SASRec": (_STUDY, [0.0619, 0.0890, 0.1225, 0.0349, 0.0436, 0.0520]),
        "SASRec + pipeline": (_STUDY, [0.0641, 0.0925, 0.1250, 0.0370, 0.0461, 0.0543]),
        "DuoRec": (_STUDY, [0.0634, 0.0934, 0.1269, 0.0380, 0.0476, 0.0561]),
        "DuoRec + pipeline": (_STUDY, [0.0654, 0.0946, 0.1292, 0.0403, 0.0497, 0.0584]),
    },
    "amazon-sports-outdoors": {
        "SASRec": (_STUDY, [0.0311, 0.0472, 0.0691, 0.0170, 0.0222, 0.0277]),
        "SASRec + pipeline": (_STUDY, [0.0307, 0.0482, 0.0719, 0.0174, 0.0231, 0.0290]),
        "DuoRec": (_STUDY, [0.0301, 0.0453, 0.0667, 0.0192, 0.0241, 0.0294]),
        "DuoRec + pipeline": (_STUDY, [0.0310, 0.0464, 0.0686, 0.0203, 0.0253, 0.0308]),
        # a transcription of the RaSeRec paper's Sports row, not checked against the PDF
        "RaSeRec@DuoRec": ("RaSeRec paper (transcribed)", [None, 0.0497, None, None, 0.0264, None]),
    },
}
TESTED = ("ndcg@10", "recall@10")
# How far a re-evaluated checkpoint may land from its stored run (a few of 22k users: a rebuilt
# bank's near-ties) for its per-user values to stand for the run; the table notes any drift.
TOLERANCE = 5e-4


def drift(result, row):
    """{metric: |result - the stored row's test result|} where they differ past RecBole's rounding."""
    stored = row["test_result"]
    return {m: abs(result[m] - stored[m]) for m in METRICS if abs(result[m] - stored[m]) > 1.5e-4}


def per_user_of(row, dataset, store_dir, log=print, backfill=False, sasrec=None):
    """A stored row's per-user test values: the file beside it, else (``backfill``) its
    checkpoint evaluated now and the file written, after checking the recomputed metrics are
    the stored ones; else None."""
    path = per_user_path(row["path"])
    if os.path.isfile(path):
        return load_per_user(path)
    if not backfill:
        return None
    checkpoint = row["saved_model_file"]
    if not checkpoint or not os.path.isfile(checkpoint):
        raise ConfigError(
            f"{row['settings']['label']}: checkpoint '{checkpoint}' is gone; its per-user values cannot be made."
        )
    overrides = {"show_progress": False}
    settings = row["settings"]
    if "regen_data_path" in settings["overrides"]:  # evaluated on its regenerated set, decoded again if gone
        run = next((r for r in RUNS if r.label == settings["label"]), None)
        if run is None:
            raise ConfigError(
                f"Row '{settings['label']}' is no longer in bench.accuracy's RUNS: its set cannot be made."
            )
        # (a row stored before the recipe keys existed ran the first recipe)
        config = {**ADDED_REGEN_KEYS, **settings["overrides"], "seed": settings["seed"]}
        # the regenerator lies beside the row that used it (a row read from another store too)
        row_store = os.path.dirname(row["path"]) or store_dir
        folder = regenerated_dataset(run, config, dataset, settings["seed"], sasrec, row_store, log)
        overrides["data_path"] = os.path.dirname(os.path.normpath(folder))
    log(f"evaluate {settings['label']} from {checkpoint} for its per-user values")
    result, per_user = evaluate(checkpoint, overrides, per_user=True)
    if max(drift(result, row).values(), default=0) > TOLERANCE:
        stored = {m: row["test_result"][m] for m in METRICS}
        raise ConfigError(f"{settings['label']}: {checkpoint} now gives {result}, not the run's test {stored}.")
    save_per_user(path, per_user)
    return per_user


def row_settings(dataset, data_path, out_dir, settings=None):
    """(store_dir, read_dirs, overrides) of ``dataset``'s Table 1 rows: where they are stored
    and read, and what every row runs with (``settings`` on top: rows of their own)."""
    store_dir, regen_path, read_dirs = store_of(dataset, out_dir)
    overrides = {"show_progress": False, "data_path": data_path, "regen_data_path": regen_path, **RECIPE}
    return store_dir, read_dirs, {**overrides, **(settings or {})}


def collect(dataset, data_path, out_dir, train=False, backfill=False, log=print, settings=None):
    """{table name: (stored row, per-user values or None)} of ``dataset``, and {name: why missing};
    ``settings``: overrides of every row (other settings are other rows)."""
    store_dir, read_dirs, overrides = row_settings(dataset, data_path, out_dir, settings)
    runs = select_runs(ORDER)
    results, skipped = run_all(runs, dataset, [SEED], overrides, store_dir, log=log, read_dirs=read_dirs, train=train)
    sasrec = (results.get(ITEM_TABLE_ROW) or [None])[0]
    return table_entries(TABLE, results, skipped, dataset, store_dir, log, backfill, sasrec)


def table_entries(table, results, skipped, dataset, store_dir, log=print, backfill=False, sasrec=None):
    """{table name: (stored row, per-user values or None)} of ``table``'s rows in ``results``, and
    {name: why missing} (``per_user_of`` for the per-user values)."""
    rows, missing = {}, {}
    for name, label, _ in table:
        if label not in results:
            missing[name] = skipped.get(label, "not run yet")
            continue
        row = results[label][0]
        rows[name] = (row, per_user_of(row, dataset, store_dir, log, backfill, sasrec))
    return rows, missing


def improvement(ours, base, metric):
    return (ours[metric] - base[metric]) / base[metric] * 100 if base[metric] else float("nan")


def table_rows(dataset, rows, missing, table=None, published=None):
    """Markdown rows and CSV rows of one dataset's block of ``table`` (default Table 1's), each
    beside its ``published`` numbers (default the study's)."""
    md, out = [], []
    published = (PUBLISHED if published is None else published).get(dataset, {})
    for name, _, base in table or TABLE:
        if name in missing:
            md.append([name, "ours", *[""] * len(METRICS), "", "", "", missing[name]])
            if name in published:  # the number to reach stays in view
                md.append(_published_cells(name, *published[name]))
            continue
        row, per_user = rows[name]
        tests = {}
        if base and base in rows and per_user is not None and rows[base][1] is not None:
            tests = {t.metric: t for t in compare_runs(rows[base][1], per_user, TESTED)}
        stopped = row.get("stopped_early")
        test = row["test_result"]
        md.append(
            [name, "ours", *[f"{test[m]:.4f}" for m in METRICS]]
            + [paired_cell(tests.get(m)) for m in TESTED]
            + [_stop_cell(row), _drift_note(row, per_user)]
        )
        out.append(
            [dataset, name, "ours", *[test[m] for m in METRICS], stopped, row.get("best_epoch"), row.get("epochs_run")]
            + _test_columns(tests, base)
        )
        if name in published:
            source, numbers = published[name]
            md.append(_published_cells(name, source, numbers))
            out.append(
                [dataset, name, source, *[v if v else "" for v in numbers], "", "", ""] + _test_columns({}, None)
            )
        if base and base in rows:
            base_test = rows[base][0]["test_result"]
            cells = [f"{improvement(test, base_test, m):+.1f}%" for m in METRICS]
            md.append([f"Improvement over {base}", "ours", *cells, "", "", "", ""])
            if name in published and base in published and published[base][0] == published[name][0]:
                theirs, mine = published[base][1], published[name][1]
                cells = [f"{(a - b) / b * 100:+.1f}%" if a and b else "" for a, b in zip(mine, theirs)]
                md.append([f"*Improvement over {base}*", f"*{published[name][0]}*", *cells, "", "", "", ""])
    return md, out


def _published_cells(name, source, numbers):
    """A published row of the Markdown table (italic, beside ours)."""
    return [f"*{name}*", f"*{source}*", *[f"{v:.4f}" if v else "" for v in numbers], "", "", "", ""]


def _drift_note(row, per_user):
    """Where the per-user values (re-evaluated from the checkpoint) average to other metrics than
    the stored run's, by how much."""
    if per_user is None:
        return "no per-user values stored (run with --per_user)"
    means = {m: float(np.mean(per_user[m])) for m in METRICS}
    drifted = drift(means, row)
    return "; ".join(f"tested on {m} {means[m]:.4f} (run {row['test_result'][m]:.4f})" for m in drifted)


def _stop_cell(row):
    if row.get("stopped_early"):
        return f"yes (best epoch {row.get('best_epoch')} of {row.get('epochs_run')})"
    return f"no ({row.get('epochs_run')} epochs)" if row.get("stopped_early") is False else "unknown"


def _test_columns(tests, base):
    ndcg = tests.get("ndcg@10")
    recall = tests.get("recall@10")
    if not ndcg:
        return [base or "", "", "", "", "", "", ""]
    p = "" if ndcg.p_t is None else ndcg.p_t
    return [
        base,
        ndcg.difference,
        ndcg.ci_low,
        ndcg.ci_high,
        p,
        "" if ndcg.p_wilcoxon is None else ndcg.p_wilcoxon,
        "" if recall is None or recall.p_t is None else recall.p_t,
    ]


CSV_HEADER = ["dataset", "model", "source", *METRICS, "stopped_early", "best_epoch", "epochs_run"] + [
    "base",
    "ndcg@10_difference",
    "ndcg@10_ci_low",
    "ndcg@10_ci_high",
    "p_value",
    "p_wilcoxon",
    "recall@10_p_value",
]
MD_HEADER = ["method", "source", "R@5", "R@10", "R@20", "N@5", "N@10", "N@20"] + [
    "N@10 vs base: difference [95% CI] p",
    "R@10 vs base: difference [95% CI] p",
    "stopped early",
    "note",
]


def write_table1(blocks, out_dir, settings=None):
    """results/table1.md (a block per dataset) and results/table1.csv; returns the Markdown."""
    given = ", ".join(f"{k}={v}" for k, v in sorted((settings or {}).items()))
    parts = [
        "# The reference study's Table 1, reproduced",
        "",
        f"Measured on {machine()}. Seed {SEED}, properties/overall.yaml's budget (early stopping on valid "
        "NDCG@10), leave-one-out, full ranking, RecBole's evaluator. *SASRec + pipeline*: DR4SR's regenerated "
        "data -> SASRec -> RAFT with a bank of all pairs (bench.accuracy's `SASRec+regen+RAFT(pairs)`); "
        "RaSeRec@B: RAFT on backbone B without regeneration. Each improvement is tested against its base over "
        "the same test users: difference of means, 95% bootstrap interval, two-sided paired t-test p."
        + (f" Every run with {given}." if given else ""),
        "",
        "Reproduce: `python -m bench.table1 --data_path=DATA_PATH --run --per_user` (resumes; each dataset "
        "about 6-8 h on 2 CPU cores).",
    ]
    csv_rows = []
    for dataset, (md, out) in blocks.items():
        parts += ["", f"## {dataset}", "", markdown_table(MD_HEADER, md)]
        csv_rows += out
    text = "\n".join(parts) + "\n"
    with atomic_path(os.path.join(out_dir, "table1.md")) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    write_csv(os.path.join(out_dir, "table1.csv"), csv_rows)
    return text


def write_csv(path, rows):
    """The table's rows under CSV_HEADER, written whole or not at all."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_HEADER)
        writer.writerows(rows)


def add_run_arguments(parser):
    """--run and --per_user, as every table of stored, tested rows takes them."""
    parser.add_argument("--run", action="store_true", help="train the rows not stored yet (resumable)")
    parser.add_argument("--per_user", action="store_true", help="evaluate stored rows that lack per-user values")
    return parser


def build_parser():
    parser = table_parser(__doc__)
    for action in parser._actions:  # one table over three datasets: --dataset is --datasets here
        if action.dest == "dataset":
            action.required = False
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated (default: the three)")
    return add_run_arguments(parser)


def main(argv=None):
    return command(lambda: _main(argv))


def _main(argv):
    args, rest = build_parser().parse_known_args(argv)
    settings = parse_overrides(rest)  # e.g. a GPU's eval_batch_size: rows of their own
    if args.dataset:
        raise ConfigError("bench.table1 takes --datasets (comma-separated), not --dataset.")
    if not args.data_path:
        raise ConfigError("--data_path is required: the folder holding amazon-beauty/, amazon-toys-games/, ...")
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in datasets if d not in DATASETS]
    if not datasets or unknown:
        raise ConfigError(f"--datasets takes some of {', '.join(DATASETS)}, got {args.datasets!r}.")
    blocks = {}
    for dataset in DATASETS:  # the written table always holds all three, in the study's order
        train = args.run and dataset in datasets
        backfill = args.per_user and dataset in datasets
        rows, missing = collect(dataset, args.data_path, args.out_dir, train, backfill, settings=settings)
        blocks[dataset] = table_rows(dataset, rows, missing)
    print(write_table1(blocks, args.out_dir, settings))
    print(f"written to {args.out_dir}/table1.md and .csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
