"""Command line: ``python run_recbole_rag.py --model=M --dataset=D [--config_files="a.yaml b.yaml"]
[--compare=M1,M2,...] [--any_recbole_key=value ...]``, and
``python run_recbole_rag.py recommend --checkpoint=FILE --users=u1,u2 [--k=10]``."""

import argparse
import ast
import sys
import warnings

from recbole.utils import dict2str

from recbole_rag.errors import ConfigError, RecBoleRagError
from recbole_rag.inference import recommend
from recbole_rag.quick_start import compare, run_recbole_rag


def parse_overrides(args):
    """``--key=value`` strings -> dict; a value is read as a Python literal (number, list, dict,
    None, True/False) where it is one, else kept as a string, as RecBole reads its command line."""
    overrides = {}
    for arg in args:
        key, sep, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if not key or not sep:
            raise ConfigError(f"Cannot read argument '{arg}': overrides look like --key=value.")
        overrides[key] = _literal(value)
    return overrides


def _literal(text):
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def build_parser():
    parser = argparse.ArgumentParser(
        description="Run a RecBole or recbole-rag model under the standard protocol.",
        epilog="Any other --key=value overrides that RecBole/recbole-rag setting.",
        allow_abbrev=False,  # --data_path must never be read as a prefix of --dataset
    )
    parser.add_argument("--model", "-m", default=None, help="model name (default SASRec)")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset name (default ml-100k)")
    parser.add_argument("--config_files", default="", help="space-separated YAML files")
    parser.add_argument("--compare", default="", help="comma-separated models to compare")
    parser.add_argument(
        "--out_dir", default="saved", help="where --compare writes its table (default saved/, beside the checkpoints)"
    )
    return parser


def build_recommend_parser():
    parser = argparse.ArgumentParser(
        prog="recommend",
        description="Top-k items for users, after each one's whole history, from a saved run.",
        epilog="Any other --key=value overrides a setting of the saved run (e.g. --data_path where the data moved).",
        allow_abbrev=False,
    )
    parser.add_argument("--checkpoint", required=True, help="a .pth file a run saved")
    parser.add_argument("--users", required=True, help="comma-separated user tokens, as in the .inter file")
    parser.add_argument("--k", type=int, default=10, help="how many items per user (default 10)")
    return parser


def recommend_main(argv):
    args, rest = build_recommend_parser().parse_known_args(argv)
    try:
        users = [u.strip() for u in args.users.split(",") if u.strip()]
        if not users:
            raise ConfigError("--users needs at least one user token, e.g. --users=u1,u2.")
        found = recommend(args.checkpoint, users, args.k, parse_overrides(rest))
    except RecBoleRagError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for user, items in found.items():
        print(f"{user}\t" + " ".join(item for item, _ in items))
    return 0


def _one_line_warning(message, category, filename, lineno, line=None):
    return f"warning: {message}\n"


def main(argv=None):
    shown = warnings.formatwarning
    warnings.formatwarning = _one_line_warning  # a warning reads like an error: one line
    try:
        return _main(sys.argv[1:] if argv is None else list(argv))
    finally:
        warnings.formatwarning = shown


def _main(argv):
    if argv[:1] == ["recommend"]:
        return recommend_main(argv[1:])
    args, rest = build_parser().parse_known_args(argv)
    try:
        overrides = parse_overrides(rest)
        files = args.config_files.split() or None
        if args.compare and args.model:
            raise ConfigError("Give --model (one run) or --compare (several), not both.")
        if args.compare:
            _, table = compare(args.compare, args.dataset, files, overrides, args.out_dir)
            print(table)
            print(f"\nwritten to {args.out_dir}/{args.dataset}-compare.md and .csv")
            return 0
        result = run_recbole_rag(args.model or "SASRec", args.dataset, files, overrides)
    except RecBoleRagError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"best valid: {dict2str(result['best_valid_result']) or 'none (no epoch was validated)'}")
    print(f"test result: {dict2str(result['test_result'])}")
    return 0
