"""The regeneration table: test results read from run logs (RecBole's "test result:" line) and
from a comparison CSV, with the change of each metric over the first row; writes Markdown + CSV.

    python -m bench.regen_table --out=results/amazon-beauty-regen \
        --csv_row="SASRec=results/amazon-beauty-compare.csv:SASRec" \
        --log_row="SASRec on amazon-beauty-regen=log/regen-beauty-pipeline.log:-1" ...

``--log_row=LABEL=LOG:N`` takes the N-th "test result" line of LOG (Python index, -1 = last).
"""

import csv
import re
import sys

from bench.report import write_report
from recbole_rag.errors import CommandParser, ConfigError, command

METRICS = ["recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20"]
_PAIR = re.compile(r"\('([a-z]+@\d+)', (?:np\.float64\()?([0-9.e-]+)\)?\)")
_PLAIN = re.compile(r"([a-z]+@\d+) : ([0-9.e-]+)")  # RecBole's dict2str form, as runs log it now


def from_log(path, index):
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line for line in f if "test result" in line and ("OrderedDict" in line or " : " in line)]
    except OSError as error:
        raise ConfigError(f"--log_row: cannot read {path!r} ({error.strerror}).") from None
    if not -len(lines) <= index < len(lines):
        raise ConfigError(f"--log_row: {path!r} has {len(lines)} test result line(s); index {index} is not one.")
    found = {k: float(v) for k, v in _PAIR.findall(lines[index]) or _PLAIN.findall(lines[index])}
    if any(m not in found for m in METRICS):
        raise ConfigError(
            f"--log_row: {path!r}'s test result line {index} lacks {', '.join(sorted(set(METRICS) - set(found)))}."
        )
    return found


def from_csv(path, model):
    try:
        with open(path, encoding="utf-8") as f:
            row = next((r for r in csv.DictReader(f) if r.get("model") == model), None)
    except OSError as error:
        raise ConfigError(f"--csv_row: cannot read {path!r} ({error.strerror}).") from None
    if row is None or any(m not in row for m in METRICS):
        raise ConfigError(f"--csv_row: {path!r} has no row with model {model!r} and the metrics {', '.join(METRICS)}.")
    return {m: float(row[m]) for m in METRICS}


def split_spec(option, spec):
    """``LABEL=PATH:PART`` -> (label, path, part)."""
    label, _, rest = spec.partition("=")
    path, _, part = rest.rpartition(":")
    if not (label and path and part):
        raise ConfigError(f"--{option} {spec!r}: expected LABEL=PATH:{'N' if option == 'log_row' else 'MODEL'}.")
    return label, path, part


def change_pct(value, base):
    return (value - base) / base * 100 if base else float("nan")


def main(argv=None):
    return command(lambda: _main(argv))


def _main(argv):
    parser = CommandParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="path without extension")
    parser.add_argument("--csv_row", action="append", default=[])
    parser.add_argument("--log_row", action="append", default=[])
    parser.add_argument("--order", default="", help="comma-separated labels in table order")
    args = parser.parse_args(argv)
    return write_table(args)


def write_table(args):
    rows = {}
    for spec in args.csv_row:
        label, path, model = split_spec("csv_row", spec)
        rows[label] = from_csv(path, model)
    for spec in args.log_row:
        label, path, index = split_spec("log_row", spec)
        try:
            index = int(index)
        except ValueError:
            raise ConfigError(f"--log_row {spec!r}: {index!r} is not a line index (e.g. -1 for the last).") from None
        rows[label] = from_log(path, index)
    if not rows:
        raise ConfigError("no rows: give --csv_row or --log_row at least once.")
    labels = args.order.split(",") if args.order else list(rows)
    unknown = [label for label in labels if label not in rows]
    if unknown:
        raise ConfigError(f"--order names {', '.join(unknown)}, not among the rows ({', '.join(rows)}).")
    base = rows[labels[0]]
    changes = {label: [change_pct(rows[label][m], base[m]) for m in METRICS] for label in labels}
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
    sys.exit(main())
