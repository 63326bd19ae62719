"""The regeneration table: test results read from run logs (RecBole's "test result:" line) and
from a comparison CSV, with the change of each metric over the first row; writes Markdown + CSV.

    python -m bench.regen_table --out=results/amazon-beauty-regen \
        --csv_row="SASRec=results/amazon-beauty-compare.csv:SASRec" \
        --log_row="SASRec on amazon-beauty-regen=log/regen-beauty-pipeline.log:-1" ...

``--log_row=LABEL=LOG:N`` takes the N-th "test result" line of LOG (Python index, -1 = last).
"""

import argparse
import csv
import re

from bench.report import write_report

METRICS = ["recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20"]
_PAIR = re.compile(r"\('([a-z]+@\d+)', (?:np\.float64\()?([0-9.e-]+)\)?\)")


def from_log(path, index):
    lines = [line for line in open(path, encoding="utf-8") if "test result: OrderedDict" in line]
    if not lines:
        raise SystemExit(f"no test result in {path}")
    return {k: float(v) for k, v in _PAIR.findall(lines[index])}


def from_csv(path, model):
    with open(path, encoding="utf-8") as f:
        row = next(r for r in csv.DictReader(f) if r["model"] == model)
    return {m: float(row[m]) for m in METRICS}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="path without extension")
    parser.add_argument("--csv_row", action="append", default=[])
    parser.add_argument("--log_row", action="append", default=[])
    parser.add_argument("--order", default="", help="comma-separated labels in table order")
    args = parser.parse_args(argv)
    rows = {}
    for spec in args.csv_row:
        label, _, rest = spec.partition("=")
        path, _, model = rest.rpartition(":")
        rows[label] = from_csv(path, model)
    for spec in args.log_row:
        label, _, rest = spec.partition("=")
        path, _, index = rest.rpartition(":")
        rows[label] = from_log(path, int(index))
    labels = args.order.split(",") if args.order else list(rows)
    base = rows[labels[0]]
    changes = {label: [(rows[label][m] - base[m]) / base[m] * 100 for m in METRICS] for label in labels}
    table = write_report(
        args.out,
        "Regeneration: test results, change over the first row",
        ["model"] + METRICS + [f"{m} vs {labels[0]}" for m in ("ndcg@10", "recall@10")],
        [
            [label]
            + [f"{rows[label][m]:.4f}" for m in METRICS]
            + [f"{changes[label][4]:+.1f}%", f"{changes[label][1]:+.1f}%"]
            for label in labels
        ],
        csv_header=["model"] + METRICS + [f"{m}_change_pct" for m in METRICS],
        csv_rows=[
            [label] + [rows[label][m] for m in METRICS] + [round(c, 2) for c in changes[label]] for label in labels
        ],
    )
    print(table)
    return 0


if __name__ == "__main__":
    main()
