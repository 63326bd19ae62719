"""Convert common public interaction formats into RecBole atomic files.

RecBole reads ``<data_path>/<dataset>/<dataset>.inter``: a tab-separated file whose header names
each column with its type. Data comes as a plain ``user,item,timestamp`` CSV, Amazon ratings CSV,
Amazon review JSON lines or per-user item sequences, so this module writes that file from each of
them, checking every line on the way: a bad line stops the conversion with its file, number and
text instead of turning into a silently wrong dataset later.

Usage::

    python -m recbole_rag.data.convert --format csv --input clicks.csv --dataset mine   # user,item,timestamp
    python -m recbole_rag.data.convert --format amazon-csv --input ratings_Beauty.csv \\
        --dataset beauty [--output_dir dataset] [--force]
    python -m recbole_rag.data.convert --download=ml-100k [--output_dir dataset] [--force]
"""

import difflib
import gzip
import json
import math
import os
import shutil
import sys
import zipfile
import zlib

from recbole_rag.errors import CommandParser, DatasetError, command
from recbole_rag.files import atomic_path

_GZIP_MAGIC = b"\x1f\x8b"


# --------------------------------------------------------------------------- reading


def _open_text(path):
    """Open ``path`` as UTF-8 text, gunzipping it when it is gzip data (whatever its name)."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == _GZIP_MAGIC
    if gzipped:
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _lines(path):
    """Yield ``(line_number, line)`` for the non-blank lines of ``path``, one at a time.

    Streaming keeps memory flat on multi-GB dumps; tqdm shows progress only on a terminal.
    """
    from tqdm import tqdm

    with _open_text(path) as f:
        lines = tqdm(f, desc=f"reading {os.path.basename(path)}", unit=" lines", disable=None, leave=False)
        for number, line in enumerate(lines, start=1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield number, line


def _bad(path, number, line, expected):
    """The error for one malformed line: where it is, what it holds, what was expected."""
    shown = line if len(line) <= 200 else line[:200] + "..."
    return DatasetError(f"{path}, line {number}: expected {expected}; got {shown!r}")


def _number(text, path, number, line, what):
    """Parse a finite float; NaN or inf would sort and train as garbage."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(text, bool) or not math.isfinite(value):
        raise _bad(path, number, line, f"{what} to be a number, not {text!r}")
    return value


def _token(value, path, number, line, what):
    """Check a user or item id: a non-empty string RecBole's tab-separated reader keeps intact."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise _bad(path, number, line, f"{what} to be a non-empty string, not {value!r}")
    if any(c in value for c in "\t\r\n") or value.startswith('"'):
        raise _bad(path, number, line, f"{what} without tabs, line breaks or a leading quote")
    return value


def read_amazon_csv(path):
    """Amazon ratings CSV (``ratings_Beauty.csv``): no header, ``user,item,rating,timestamp``."""
    import csv

    for number, line in _lines(path):
        # The ratings dumps are never quoted; fall back to the csv module only when a line is.
        fields = next(csv.reader([line])) if '"' in line else line.split(",")
        if len(fields) != 4:
            raise _bad(
                path,
                number,
                line,
                f"4 comma-separated columns user,item,rating,timestamp (no header), found {len(fields)}",
            )
        user, item, rating, timestamp = (field.strip() for field in fields)
        yield (
            _token(user, path, number, line, "user"),
            _token(item, path, number, line, "item"),
            _number(rating, path, number, line, "rating (3rd column; the file must have no header)"),
            _number(timestamp, path, number, line, "timestamp (4th column)"),
        )


# Header names ``read_csv`` understands, per column (case-insensitive).
CSV_COLUMNS = {
    "user": ("user", "user_id", "userid", "uid", "reviewerid"),
    "item": ("item", "item_id", "itemid", "iid", "asin"),
    "timestamp": ("timestamp", "time", "ts", "unixreviewtime"),
    "rating": ("rating", "score", "overall"),
}


def _csv_header(fields, path, line):
    """{column: index} from a header line; a clear error for a name it cannot place."""
    names = {name: column for column, names in CSV_COLUMNS.items() for name in names}
    found = {}
    for index, field in enumerate(fields):
        column = names.get(field.strip().lower())
        if column is None or column in found:
            expected = "a header naming user, item, timestamp (and optionally rating) columns once each"
            raise _bad(path, 1, line, f"{expected}, not {field.strip()!r}")
        found[column] = index
    missing = [c for c in ("user", "item", "timestamp") if c not in found]
    if missing:
        raise _bad(path, 1, line, f"a header with a {', '.join(missing)} column")
    return found


def read_csv(path):
    """A plain click log, comma-separated: ``user,item,timestamp`` per line, with or without a
    header; a header may name the columns in any order and add a ``rating`` column."""
    import csv

    columns = None
    for number, line in _lines(path):
        fields = next(csv.reader([line]))
        if columns is None:
            if number == 1 and not _is_number(fields[-1]):  # a header: its last name is no time
                columns = _csv_header(fields, path, line)
                continue
            columns = {"user": 0, "item": 1, "timestamp": 2}
        if len(fields) != len(columns):
            shape = ",".join(sorted(columns, key=columns.get))
            hint = "" if "rating" in columns else " (a rating column needs a header line naming the columns)"
            raise _bad(path, number, line, f"{len(columns)} comma-separated columns {shape}{hint}, found {len(fields)}")
        rating = fields[columns["rating"]].strip() if "rating" in columns else None
        yield (
            _token(fields[columns["user"]].strip(), path, number, line, "user"),
            _token(fields[columns["item"]].strip(), path, number, line, "item"),
            None if rating is None else _number(rating, path, number, line, "rating"),
            _number(fields[columns["timestamp"]].strip(), path, number, line, "timestamp"),
        )


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_amazon_json(path):
    """Amazon review JSON lines, gzipped or not: ``reviewerID``, ``asin``, ``unixReviewTime``.

    ``overall`` (the rating) is optional, but the first record decides: either every record has
    it or none does, so the rating column is never half empty.
    """
    with_rating = None
    for number, line in _lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _bad(path, number, line, f"one JSON object per line ({exc.msg})") from None
        if not isinstance(record, dict):
            raise _bad(path, number, line, "one JSON object per line")
        missing = [key for key in ("reviewerID", "asin", "unixReviewTime") if key not in record]
        if missing:
            raise _bad(path, number, line, f"keys reviewerID, asin, unixReviewTime; missing {', '.join(missing)}")
        if with_rating is None:
            with_rating = "overall" in record
        elif with_rating != ("overall" in record):
            state = "has" if with_rating else "lacks"
            raise _bad(path, number, line, f"key 'overall' in every record or in none (the first record {state} it)")
        yield (
            _token(record["reviewerID"], path, number, line, "reviewerID"),
            _token(record["asin"], path, number, line, "asin"),
            _number(record["overall"], path, number, line, "overall") if with_rating else None,
            _number(record["unixReviewTime"], path, number, line, "unixReviewTime"),
        )


def read_sequences(path):
    """Per-user sequences, ``user item1 item2 ...`` in time order; the position is the timestamp."""
    seen = {}
    for number, line in _lines(path):
        user, *items = line.split()
        if not items:
            raise _bad(path, number, line, "a user followed by at least one item, separated by whitespace")
        if user in seen:
            # A second line would restart positions at 1 and interleave the two sequences.
            raise _bad(path, number, line, f"one line per user, but user {user!r} is already on line {seen[user]}")
        seen[user] = number
        _token(user, path, number, line, "user")
        for position, item in enumerate(items, start=1):
            yield user, _token(item, path, number, line, "item"), None, float(position)


READERS = {
    "csv": read_csv,
    "amazon-csv": read_amazon_csv,
    "amazon-json": read_amazon_json,
    "sequences": read_sequences,
}


# --------------------------------------------------------------------------- writing


def _format_number(value):
    """Write whole numbers without ``.0`` (Unix times stay readable); others exactly."""
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def _write_inter(rows, path, source):
    """Write ``rows`` as a RecBole ``.inter`` file, users in first-seen order, each sorted by time.

    Rows are grouped in memory because a user's interactions may be spread over the whole input;
    the file appears only when complete (temp file + os.replace), so a failure leaves no half file.
    """
    by_user, items, with_rating, total = {}, set(), None, 0
    for user, item, rating, timestamp in rows:
        if with_rating is None:
            with_rating = rating is not None
        by_user.setdefault(user, []).append((timestamp, item, rating))
        items.add(item)
        total += 1
    if not total:
        raise DatasetError(f"{source} holds no interactions; nothing to convert")

    columns = ["user_id:token", "item_id:token"] + (["rating:float"] if with_rating else []) + ["timestamp:float"]
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write("\t".join(columns) + "\n")
        for user, events in by_user.items():
            events.sort(key=lambda event: event[0])  # list.sort is stable: ties keep input order
            for timestamp, item, rating in events:
                fields = [user, item] + ([_format_number(rating)] if with_rating else []) + [_format_number(timestamp)]
                f.write("\t".join(fields) + "\n")
    return {"path": path, "interactions": total, "users": len(by_user), "items": len(items)}


# --------------------------------------------------------------------------- public API


def _inter_path(dataset, output_dir, force):
    """``<output_dir>/<dataset>/<dataset>.inter``, refusing to clobber an existing one."""
    if not dataset or dataset in (".", "..") or "/" in dataset or os.sep in dataset:
        raise DatasetError(f"dataset name {dataset!r} must be a plain name (it becomes a folder and file name)")
    path = os.path.join(output_dir, dataset, f"{dataset}.inter")
    if os.path.exists(path) and not force:
        raise DatasetError(f"{path} already exists; pass --force to overwrite it")
    return path


def convert(fmt, input_path, dataset, output_dir, force=False):
    """Convert ``input_path`` in format ``fmt`` into ``<output_dir>/<dataset>/<dataset>.inter``.

    Returns ``{"path", "interactions", "users", "items"}``. Raises DatasetError on an unknown
    format, a missing or empty input, a malformed line, or an existing output without ``force``.
    """
    if fmt not in READERS:
        raise DatasetError(f"unknown format {fmt!r}; use one of: {', '.join(READERS)}")
    if not os.path.isfile(input_path):
        raise DatasetError(f"input file {input_path} does not exist")
    path = _inter_path(dataset, output_dir, force)
    try:
        return _write_inter(READERS[fmt](input_path), path, input_path)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{input_path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DatasetError(f"{input_path} is a damaged gzip file ({exc})") from None
    except OSError as exc:
        raise DatasetError(f"cannot convert {input_path} into {path}: {exc}") from None


def _known_urls():
    """RecBole's table of downloadable datasets: name -> zip URL."""
    import recbole
    import yaml

    with open(os.path.join(os.path.dirname(recbole.__file__), "properties/dataset/url.yaml")) as f:
        return yaml.safe_load(f)


def download(dataset, output_dir, force=False):
    """Fetch a dataset RecBole hosts into ``<output_dir>/<dataset>/``; returns that folder.

    Files are renamed to ``<dataset>.*`` (as RecBole does), so ``dataset: <dataset>`` finds them.
    """
    urls = _known_urls()
    if dataset not in urls:
        close = difflib.get_close_matches(dataset, urls, n=5) or sorted(urls)[:5]
        raise DatasetError(
            f"RecBole has no download for dataset {dataset!r}; known names include {', '.join(close)} "
            f"({len(urls)} in all, see RecBole's properties/dataset/url.yaml)"
        )
    _inter_path(dataset, output_dir, force)
    # recbole.utils pulls in torch and friends (~2 s); only downloads need it.
    from recbole.utils.url import download_url, extract_zip, makedirs, rename_atomic_files

    folder = os.path.join(output_dir, dataset)
    url = urls[dataset]
    created = not os.path.isdir(folder)
    try:
        makedirs(folder)
        zip_path = download_url(url, folder)
        extract_zip(zip_path, folder)
        os.unlink(zip_path)
    except (OSError, RuntimeError, zipfile.BadZipFile) as exc:  # urllib's errors are OSErrors
        if created:  # leave no empty or half-filled folder for RecBole to trip over later
            shutil.rmtree(folder, ignore_errors=True)
        raise DatasetError(
            f"downloading {dataset} from {url} failed ({exc}); check the network, "
            f"or convert local files instead with --format/--input"
        ) from None
    rename_atomic_files(folder, os.path.splitext(os.path.basename(zip_path))[0], dataset)
    return folder


# --------------------------------------------------------------------------- CLI


def main(argv=None):
    """Command line entry point; returns the exit status (2 on a DatasetError, with no traceback)."""
    return command(lambda: cli(argv))


def cli(argv):
    """``recbole-rag convert ...``: raises what ``main`` prints as one line."""
    parser = CommandParser(
        prog="recbole-rag convert",
        description="Convert public interaction data into RecBole atomic files, or download a RecBole dataset.",
        allow_abbrev=False,
    )
    parser.add_argument("--format", help=f"input format: {', '.join(READERS)}")
    parser.add_argument("--input", help="input file (.gz accepted)")
    parser.add_argument("--dataset", help="dataset name: writes <output_dir>/<dataset>/<dataset>.inter")
    parser.add_argument("--download", metavar="DATASET", help="fetch a dataset RecBole hosts instead of converting")
    parser.add_argument("--output_dir", default="dataset", help="RecBole data_path (default: dataset)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")
    args = parser.parse_args(argv)

    if args.download and (args.format or args.input or args.dataset):
        raise DatasetError("--download takes no --format, --input or --dataset")
    if not args.download and not (args.format and args.input and args.dataset):
        raise DatasetError("give --format, --input and --dataset (or --download=<dataset>)")
    if args.download:
        folder = download(args.download, args.output_dir, force=args.force)
        print(f"downloaded {args.download} into {folder}: {', '.join(sorted(os.listdir(folder)))}")
    else:
        counts = convert(args.format, args.input, args.dataset, args.output_dir, force=args.force)
        print(
            f"wrote {counts['path']}: {counts['interactions']} interactions, "
            f"{counts['users']} users, {counts['items']} items"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
