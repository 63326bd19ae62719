"""A second seed behind Table 1's close verdicts on amazon-beauty: regeneration alone, whose gain at
seed 2020 is under 3% or not beyond chance (SASRec+regen vs SASRec +2.8%, p = 0.051; DuoRec+regen
vs DuoRec +3.0%, p = 0.022), each row and its base at seeds 2020 and 2021, tested per seed and
pooled over both (each test user's mean over the seeds).

    python -m bench.table1_seeds --data_path=DATA_PATH [--run] [--per_user]

Rows are bench.table1's (its store, its regeneration recipe; a seed's regenerator starts from the
same seed's SASRec): seed 2020's are read back, seed 2021's train with ``--run`` (resumable, about
7 h on 2 CPU cores). ``--per_user`` evaluates a stored checkpoint that has no per-user values
(seed 2020's SASRec+regen and DuoRec+regen: their regenerated set is decoded again from the stored
regenerator first).
Writes <out_dir>/table1-seeds.md and .csv.
"""

import os
import sys

from bench.accuracy import ITEM_TABLE_ROW, paired_cell, run_all, select_runs
from bench.report import table_parser, write_report
from bench.table1 import add_run_arguments, per_user_of, row_settings
from recbole_rag.cli import parse_overrides
from recbole_rag.errors import ConfigError, command
from recbole_rag.significance import TESTED, compare_runs, mean_over_runs

DATASET = "amazon-beauty"
SEEDS = [2020, 2021]
PAIRS = [("SASRec+regen", "SASRec"), ("DuoRec+regen", "DuoRec")]  # (row, its base)
ORDER = ["SASRec", "SASRec+regen", "DuoRec", "DuoRec+regen"]  # a regenerated row after its item table's


def collect(data_path, out_dir, train=False, backfill=False, log=print, settings=None):
    """{seed: {label: (stored row, per-user values or None)}} and {seed: {label: why missing}}.
    Seed by seed, so that seed 2020's rows show while seed 2021's are still to run."""
    store_dir, read_dirs, overrides = row_settings(DATASET, data_path, out_dir, settings)
    rows, missing = {}, {}
    for seed in SEEDS:
        results, skipped = run_all(
            select_runs(ORDER), DATASET, [seed], overrides, store_dir, log=log, read_dirs=read_dirs, train=train
        )
        sasrec = (results.get(ITEM_TABLE_ROW) or [None])[0]
        rows[seed] = {
            label: (per_seed[0], per_user_of(per_seed[0], DATASET, store_dir, log, backfill, sasrec))
            for label, per_seed in results.items()
        }
        missing[seed] = skipped
    return rows, missing


def pair_tests(rows, label, base):
    """[(seed or "pooled", {metric: PairedTest})] of ``label`` against ``base``: each seed where
    both rows have per-user values, then the pooled test where every seed has them."""
    tests, pooled = [], ([], [])
    for seed in SEEDS:
        pair = rows[seed].get(base), rows[seed].get(label)
        if None in pair or pair[0][1] is None or pair[1][1] is None:
            continue
        tests.append((seed, {t.metric: t for t in compare_runs(pair[0][1], pair[1][1], TESTED)}))
        pooled[0].append(pair[0][1])
        pooled[1].append(pair[1][1])
    if len(tests) == len(SEEDS):
        pooled_tests = compare_runs(mean_over_runs(pooled[0]), mean_over_runs(pooled[1]), TESTED)
        tests.append(("pooled", {t.metric: t for t in pooled_tests}))
    return tests


def _mean(rows, label, seeds, metric):
    values = [rows[s][label][0]["test_result"][metric] for s in seeds]
    return sum(values) / len(values)


def table(rows, missing):
    """Markdown rows and CSV rows: per pair, each seed's test, then the pooled one."""
    md, out = [], []
    for label, base in PAIRS:
        tests = dict(pair_tests(rows, label, base))
        for seed in SEEDS + ["pooled"]:
            seeds = SEEDS if seed == "pooled" else [seed]
            why = next((missing[s][x] for s in seeds for x in (base, label) if x in missing[s]), None)
            if why is None and any(x not in rows[s] for s in seeds for x in (base, label)):
                why = "not run yet"
            if why:
                md.append([label, base, str(seed), "", "", "", "", "", why])
                continue
            a, b = (_mean(rows, x, seeds, "ndcg@10") for x in (base, label))
            cells = [label, base, str(seed), f"{a:.4f}", f"{b:.4f}", f"{(b - a) / a * 100:+.1f}%"]
            if seed not in tests:
                md.append(cells + ["", "", "no per-user values stored (run with --per_user)"])
                out.append([DATASET, label, base, seed, a, b] + [""] * 7)
                continue
            ndcg, recall = tests[seed]["ndcg@10"], tests[seed]["recall@10"]
            md.append(cells + [paired_cell(ndcg), paired_cell(recall), ""])
            out.append(
                [DATASET, label, base, seed, a, b, ndcg.difference, ndcg.ci_low, ndcg.ci_high, _p(ndcg.p_t)]
                + [_p(ndcg.p_wilcoxon), recall.difference, _p(recall.p_t)]
            )
    return md, out


def _p(p):
    return "" if p is None else p


MD_HEADER = ["row", "vs", "seed", "base N@10", "row N@10", "gain", "N@10 difference [95% CI] p"]
MD_HEADER += ["R@10 difference [95% CI] p", "note"]
CSV_HEADER = ["dataset", "model", "base", "seed", "base_ndcg@10", "ndcg@10", "ndcg@10_difference"]
CSV_HEADER += ["ndcg@10_ci_low", "ndcg@10_ci_high", "p_value", "p_wilcoxon", "recall@10_difference"]
CSV_HEADER += ["recall@10_p_value"]


def write_table(md, out, out_dir, settings=None):
    """<out_dir>/table1-seeds.md and .csv; returns the Markdown table."""
    given = ", ".join(f"{k}={v}" for k, v in sorted((settings or {}).items()))
    notes = [
        f"Seeds {', '.join(map(str, SEEDS))}, properties/overall.yaml's budget (early stopping on valid NDCG@10), "
        "leave-one-out, full ranking, RecBole's evaluator; each seed's regenerator starts from the same seed's "
        "SASRec item table." + (f" Every run with {given}." if given else ""),
        "Each row is tested against its base over the same test users: difference of means, 95% bootstrap "
        "interval, two-sided paired t-test p; *pooled*: each user's mean over the seeds.",
        "Reproduce: `python -m bench.table1_seeds --data_path=DATA_PATH --run --per_user` (resumes).",
    ]
    title = f"Table 1's close verdicts on {DATASET}, at a second seed"
    stem = os.path.join(out_dir, "table1-seeds")
    return write_report(stem, title, MD_HEADER, md, CSV_HEADER, out, notes)


def build_parser():
    parser = add_run_arguments(table_parser(__doc__))
    for action in parser._actions:  # one dataset, the one whose verdicts were close
        if action.dest == "dataset":
            action.required = False
    return parser


def main(argv=None):
    return command(lambda: _main(argv))


def _main(argv):
    args, rest = build_parser().parse_known_args(argv)
    if args.dataset and args.dataset != DATASET:
        raise ConfigError(f"bench.table1_seeds runs {DATASET}'s close verdicts only, got --dataset={args.dataset}.")
    if not args.data_path:
        raise ConfigError(f"--data_path is required: the folder holding {DATASET}/.")
    settings = parse_overrides(rest)
    rows, missing = collect(args.data_path, args.out_dir, args.run, args.per_user, settings=settings)
    print(write_table(*table(rows, missing), args.out_dir, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
