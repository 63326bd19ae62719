"""Dataset checks that run before RecBole loads anything, so a wrong input stops in seconds
with a message that says what to do, instead of a download attempt or a bare traceback."""

import os
import warnings

import pandas as pd
from recbole.data import create_dataset

from recbole_rag.errors import DatasetError

ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
ATOMIC_SUFFIXES = ("inter", "user", "item")


def _how_to_get(dataset_name):
    return (
        "To get it: convert raw files with `python -m recbole_rag.data.convert "
        f"--format=amazon-csv|amazon-json|sequences --input=FILE --dataset={dataset_name} "
        "--output_dir=DATA_PATH`, or, where a network exists, let RecBole download it with "
        f"`python -m recbole_rag.data.convert --download={dataset_name} --output_dir=DATA_PATH`; "
        "then pass --data_path=DATA_PATH."
    )


class DatasetWarning(UserWarning):
    """Data that loads but probably is not what the user meant (e.g. duplicated rows)."""


def read_atomic_header(path, field_separator="\t", encoding="utf-8"):
    """Column name -> type of an atomic file, checking that every column is typed."""
    try:
        with open(path, encoding=encoding) as f:
            header = f.readline().rstrip("\r\n")
    except UnicodeDecodeError as err:
        raise DatasetError(
            f"Atomic file '{path}' is not {encoding} text ({err.reason} at byte {err.start}): "
            "save it as UTF-8 or set encoding: to its encoding."
        ) from None
    if not header:
        raise DatasetError(f"Atomic file '{path}' is empty: its first line must be a typed header.")
    fields = {}
    for position, column in enumerate(header.split(field_separator), start=1):
        name, _, ftype = column.partition(":")
        if not name or ftype not in ATOMIC_TYPES:
            raise DatasetError(
                f"Atomic file '{path}': header column {position} is '{column}', not 'name:type' "
                f"with type one of {', '.join(ATOMIC_TYPES)}. The first line must look like "
                "'user_id:token<TAB>item_id:token<TAB>timestamp:float'."
            )
        fields[name] = ftype
    return fields


def check_dataset_files(config):
    """Fail fast unless the dataset's atomic files exist and have typed headers with the
    fields the config needs."""
    name, folder = config["dataset"], config["data_path"]
    if config["benchmark_filename"]:
        inter_files = [f"{name}.{part}.inter" for part in config["benchmark_filename"]]
    else:
        inter_files = [f"{name}.inter"]
    missing = [f for f in inter_files if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        where = "exists but lacks" if os.path.isdir(folder) else "does not exist, so it lacks"
        raise DatasetError(
            f"Dataset '{name}' not found: the folder '{folder}' {where} {', '.join(missing)} "
            f"(RecBole atomic files: {name}.inter, optionally {name}.item and {name}.user). " + _how_to_get(name)
        )
    separator = config["field_separator"] or "\t"
    for suffix in ATOMIC_SUFFIXES:
        for filename in inter_files if suffix == "inter" else [f"{name}.{suffix}"]:
            path = os.path.join(folder, filename)
            if not os.path.isfile(path):
                continue
            fields = read_atomic_header(path, separator, config["encoding"] or "utf-8")
            if suffix == "inter":
                needed = [config["USER_ID_FIELD"], config["ITEM_ID_FIELD"], config["TIME_FIELD"]]
                absent = [f for f in needed if f and f not in fields]
                if absent:
                    raise DatasetError(
                        f"Atomic file '{path}' has columns {', '.join(fields)} but lacks "
                        f"{', '.join(absent)}: set USER_ID_FIELD / ITEM_ID_FIELD / TIME_FIELD to "
                        "the file's names, or rename its columns."
                    )
                _check_field_types(path, fields, config)
            _check_rows(path, fields, separator, config, suffix)


def _check_field_types(path, fields, config):
    """Ids must be tokens and time a number: RecBole orders a user's items by the time field's
    values, and a token column's values are ids in order of first appearance."""
    wanted = {config["USER_ID_FIELD"]: "token", config["ITEM_ID_FIELD"]: "token", config["TIME_FIELD"]: "float"}
    for field, ftype in wanted.items():
        if field and fields.get(field) != ftype:
            raise DatasetError(
                f"Atomic file '{path}' declares '{field}:{fields[field]}'; it must be "
                f"'{field}:{ftype}' (write the header's column as {field}:{ftype})."
            )


def loaded_columns(fields, config, suffix):
    """The columns RecBole loads from a ``suffix`` file, by its own rules (load_col, unload_col)."""
    load_col, unload_col = config["load_col"], config["unload_col"] or {}
    if load_col is not None and suffix not in load_col:
        return []
    wanted = None if load_col is None or load_col[suffix] == "*" else set(load_col[suffix])
    dropped = set(unload_col.get(suffix) or [])
    return [f for f in fields if (wanted is None or f in wanted) and f not in dropped]


def _check_rows(path, fields, separator, config, suffix):
    """Every value of a loaded float column is a number; exact duplicate interactions are
    counted (a duplicated test item also sits in training, which inflates every metric)."""
    columns = loaded_columns(fields, config, suffix)
    if not columns:
        return
    try:
        frame = pd.read_csv(
            path,
            sep=separator,
            dtype=str,
            keep_default_na=False,
            encoding=config["encoding"] or "utf-8",
            usecols=[f"{f}:{fields[f]}" for f in columns],
            engine="c" if len(separator) == 1 else "python",
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise DatasetError(f"Atomic file '{path}' cannot be read as {separator!r}-separated columns: {err}") from None
    frame.columns = columns
    if suffix == "inter" and not len(frame):
        raise DatasetError(f"Atomic file '{path}' has a header but no interactions: add one row per interaction.")
    if suffix == "inter":
        _check_required(path, frame, config)
    for field in (f for f in columns if fields[f] == "float"):
        values = frame[field].str.strip()
        bad = pd.to_numeric(values, errors="coerce").isna() & (values != "")
        if bad.any():
            row = int(bad.idxmax())
            instead = "" if field == config["TIME_FIELD"] else f" or declare the column {field}:token"
            raise DatasetError(
                f"Atomic file '{path}' line {row + 2}: column '{field}' is float but holds "
                f"{frame[field][row]!r}: fix the value{instead}."
            )
    if suffix == "inter" and not config["rm_dup_inter"]:
        duplicated = int(frame.duplicated().sum())
        if duplicated:
            warnings.warn(
                f"'{path}' repeats {duplicated} interactions exactly (same values in every column): "
                "set rm_dup_inter: first to keep the first row of each user-item pair "
                "(RecBole's setting: repeat consumption goes too).",
                DatasetWarning,
                stacklevel=3,
            )


def _check_required(path, frame, config):
    """Every interaction has a user, an item and a finite time: RecBole reads an empty or missing
    time as NaN and sorts it last, so that item would silently become the user's test item."""
    for field in (config["USER_ID_FIELD"], config["ITEM_ID_FIELD"], config["TIME_FIELD"]):
        if field not in frame:
            continue
        empty = frame[field].isna() | (frame[field].str.strip() == "")
        if empty.any():
            row = int(empty.idxmax())
            raise DatasetError(
                f"Atomic file '{path}' line {row + 2}: column '{field}' is empty or missing: every interaction "
                "needs a user, an item and a time (RecBole would sort an empty time last, as the test item)."
            )
    time_field = config["TIME_FIELD"]
    if time_field in frame:
        times = pd.to_numeric(frame[time_field].str.strip(), errors="coerce")
        endless = times.isin([float("inf"), float("-inf")])
        if endless.any():
            row = int(endless.idxmax())
            raise DatasetError(
                f"Atomic file '{path}' line {row + 2}: column '{time_field}' is {frame[time_field][row]!r}: "
                "a time must be a finite number."
            )


def _empty_after_filtering(config, inter_num):
    filters = {
        key: config[key]
        for key in ("user_inter_num_interval", "item_inter_num_interval", "val_interval")
        if config[key]
    }
    return DatasetError(
        f"Dataset '{config['dataset']}' is empty after filtering ({inter_num} interactions left; "
        f"filters: {filters or 'none'}). Loosen the filters "
        '(e.g. --user_inter_num_interval="[1,inf)") or use more data.'
    )


def load_dataset(config):
    """RecBole's create_dataset with the checks above before and an emptiness check after."""
    check_dataset_files(config)
    try:
        dataset = create_dataset(config)
    except ValueError as err:
        if "feat is empty" in str(err):  # RecBole's own words when filtering removed everything
            raise _empty_after_filtering(config, 0) from err
        raise
    if dataset.inter_num == 0 or dataset.user_num <= 1 or dataset.item_num <= 1:
        raise _empty_after_filtering(config, dataset.inter_num)
    return dataset
