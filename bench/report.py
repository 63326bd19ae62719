"""What every bench script writes: a Markdown table and a CSV of the same rows under results/,
each atomically, with the machine the numbers came from."""

import csv
import io
import os
import platform

import torch

from recbole_rag.errors import CommandParser
from recbole_rag.files import atomic_path


def machine():
    """One line naming what the numbers were measured on."""
    device = (
        torch.cuda.get_device_name(0)
        if torch.cuda.is_available()
        else f"CPU ({platform.processor() or platform.machine()})"
    )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())  # other work on the machine slows timings
    return (
        f"{device}, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores (load average {load}), "
        f"torch {torch.__version__}"
    )


def _write_atomic(path, text):
    with atomic_path(path) as tmp_path, open(tmp_path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(base_path, title, header, rows, csv_header=None, csv_rows=None, notes=()):
    """``base_path``.md (title, machine, table, notes) and ``base_path``.csv (raw values); returns
    the Markdown table. The CSV may carry other columns than the table (unformatted numbers)."""
    table = markdown_table(header, rows)
    text = f"# {title}\n\nMeasured on {machine()}.\n\n{table}\n"
    if notes:
        text += "\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    _write_atomic(base_path + ".md", text)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(csv_header or header)
    writer.writerows(csv_rows if csv_rows is not None else rows)
    _write_atomic(base_path + ".csv", out.getvalue())
    return table


def table_parser(doc):
    """The arguments every bench table takes (--dataset, --data_path, --out_dir); any other
    --key=value is left for the caller to pass to every run."""
    parser = CommandParser(
        description=doc.split("\n\n")[0],
        allow_abbrev=False,
        epilog="Any other --key=value overrides a setting of every run.",
    )
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data_path", default=None, help="folder holding <dataset>/ (default: RecBole's)")
    parser.add_argument("--out_dir", default="results")
    return parser
