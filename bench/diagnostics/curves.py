"""Validation curves from RecBole run logs: one metric per epoch for several runs, side by side.

    python -m bench.diagnostics curves "SASRec=log/SASRec/run.log" "SRA-CL=sracl.log" --metric=ndcg@10 \
        --out=results/sracl/amazon-beauty-valid

Reads each log's ``valid result`` blocks (RecBole prints one per evaluation, in epoch order; a
RaSeRec log's stage 2 continues the count) and writes ``<out>.csv`` and ``.md`` (epoch, one column
per run) and ``<out>.png``. Where a run learns faster but ends lower, the test table alone hides it.
"""

import os
import re
import sys

from bench.report import write_report
from recbole_rag.errors import CommandParser, ConfigError, command
from recbole_rag.files import atomic_path


def valid_curve(path, metric):
    """The ``metric`` of every ``valid result`` block in the log at ``path``, in order."""
    if not os.path.isfile(path):
        raise ConfigError(f"no log file at '{path}'.")
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    pattern = re.compile(r"valid result:\s*\n.*?" + re.escape(metric) + r"\s*:\s*([0-9.]+)")
    values = [float(v) for v in pattern.findall(text)]
    if not values:
        raise ConfigError(f"'{path}' holds no valid result with {metric} (is it a RecBole training log?).")
    return values


def parse_runs(specs):
    runs = {}
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            raise ConfigError(f"give each run as LABEL=LOGFILE, got {spec!r}.")
        runs[label] = path
    return runs


def write_curves(curves, metric, out):
    """``out``.md/.csv (epoch rows, one column per run; blank after a run stopped) and ``out``.png."""
    labels = list(curves)
    longest = max(len(c) for c in curves.values())
    rows = [[epoch] + [curves[k][epoch] if epoch < len(curves[k]) else "" for k in labels] for epoch in range(longest)]
    notes = [f"{k}: best {max(curves[k]):.4f} at epoch {curves[k].index(max(curves[k]))}" for k in labels]
    notes.append("Read from the runs' logs: the machine named above wrote this file, the logs say where each ran.")
    table = write_report(out, f"Validation {metric} per epoch", ["epoch"] + labels, rows, notes=notes)
    plot(curves, metric, out + ".png")
    return table


def plot(curves, metric, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in curves.items():
        ax.plot(range(len(values)), values, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"valid {metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp_path:
        fig.savefig(tmp_path, dpi=110)
    plt.close(fig)


def main(argv=None):
    return command(lambda: _main(argv))


def _main(argv):
    parser = CommandParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="LABEL=LOGFILE, one per run")
    parser.add_argument("--metric", default="ndcg@10")
    parser.add_argument("--out", required=True, help="path without extension for the .csv, .md and .png")
    args = parser.parse_args(argv)
    curves = {label: valid_curve(path, args.metric) for label, path in parse_runs(args.runs).items()}
    print(write_curves(curves, args.metric, args.out))
    print(f"\nwritten to {args.out}.md, .csv and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
