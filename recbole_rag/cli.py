"""One command line, ``recbole-rag COMMAND [--option=value ...] [--any_setting=value ...]``
(``python run_recbole_rag.py`` is the same, RecBole style):

    run          --model=M --dataset=D [--config_files="a.yaml b.yaml"]   (the default command)
    compare      SASRec,DuoRec,RaSeRec@DuoRec --dataset=D [--seeds=2020,2021] [--baseline=M]
                                                                       (also: run --compare=...)
    significance --checkpoints=A.pth,B.pth           (B against A, paired over the test users)
    recommend    --checkpoint=FILE --users=u1,u2 [--k=10]
    evaluate     --checkpoint=FILE                    (a saved run's test result, recomputed)
    pipeline     --backbone=SASRec --dataset=D        (regenerate -> backbone -> RAFT)
    convert      --format=amazon-csv --input=FILE --dataset=D --output_dir=DATA_PATH
    distributed  --nproc=2 --model=M --dataset=D

Every command reports a wrong input as one ``error: ...`` line (recbole_rag.errors.command).
"""

import sys

from recbole.utils import dict2str

from recbole_rag import distributed, pipeline
from recbole_rag.data import convert
from recbole_rag.errors import CommandParser, ConfigError, command
from recbole_rag.inference import evaluate, recommend
from recbole_rag.overrides import parse_overrides
from recbole_rag.quick_start import compare, run_recbole_rag
from recbole_rag.significance import TESTED, check_metrics, compare_runs

__all__ = ["main", "parse_overrides", "COMMANDS"]


def build_parser(command="run"):
    description = {
        "run": "Run a RecBole or recbole-rag model under the standard protocol.",
        "compare": "recbole-rag compare M1,M2,... [options]: run each model under the same settings and seeds, "
        "and test each against the baseline over the same test users.",
    }[command]
    parser = CommandParser(
        prog=f"recbole-rag {command}",
        description=description,
        epilog="Any other --key=value overrides that RecBole/recbole-rag setting. Other commands: "
        "compare, significance, recommend, evaluate, pipeline, convert, distributed (recbole-rag COMMAND --help).",
        allow_abbrev=False,  # --data_path must never be read as a prefix of --dataset
    )
    parser.add_argument("--model", "-m", default=None, help="model name (default SASRec)")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset name (default ml-100k)")
    parser.add_argument("--config_files", default="", help="space-separated YAML files")
    parser.add_argument("--compare", default="", help="comma-separated models to compare")
    parser.add_argument(
        "--out_dir", default="saved", help="where --compare writes its table (default saved/, beside the checkpoints)"
    )
    parser.add_argument(
        "--seeds", default=None, help="with --compare: comma-separated seeds, each model runs once each"
    )
    parser.add_argument("--baseline", default=None, help="with --compare: the model tested against (default the first)")
    return parser


def checkpoint_parser(command, description):
    """The parser of a command that reads a saved run."""
    parser = CommandParser(
        prog=f"recbole-rag {command}",
        description=description,
        epilog="Any other --key=value overrides a setting of the saved run (e.g. --data_path where the data moved).",
        allow_abbrev=False,
    )
    parser.add_argument("--checkpoint", required=True, help="a .pth file a run saved")
    return parser


def build_recommend_parser():
    parser = checkpoint_parser("recommend", "Top-k items for users, after each one's whole history, from a saved run.")
    parser.add_argument("--users", required=True, help="comma-separated user tokens, as in the .inter file")
    parser.add_argument("--k", type=int, default=10, help="how many items per user (default 10)")
    parser.add_argument(
        "--keep_seen", action="store_true", help="also recommend items the user already has (e.g. repeat purchases)"
    )
    return parser


def recommend_cli(argv):
    args, rest = build_recommend_parser().parse_known_args(argv)
    users = [u.strip() for u in args.users.split(",") if u.strip()]
    if not users:
        raise ConfigError("--users needs at least one user token, e.g. --users=u1,u2.")
    found = recommend(args.checkpoint, users, args.k, parse_overrides(rest), exclude_seen=not args.keep_seen)
    for user, items in found.items():
        print(f"{user}\t" + " ".join(item for item, _ in items))
    return 0


def evaluate_cli(argv):
    description = "A saved run's test result, recomputed by RecBole's evaluator from the checkpoint alone."
    args, rest = checkpoint_parser("evaluate", description).parse_known_args(argv)
    print(f"test result: {dict2str(evaluate(args.checkpoint, parse_overrides(rest)))}")
    return 0


def run_cli(argv):
    args, rest = build_parser().parse_known_args(argv)
    overrides = parse_overrides(rest)
    files = args.config_files.split() or None
    if args.compare and args.model:
        raise ConfigError("Give --model (one run) or --compare (several), not both.")
    if not args.compare and (args.seeds is not None or args.baseline is not None):
        raise ConfigError("--seeds and --baseline belong to a comparison: give --compare=M1,M2 too.")
    if args.compare:
        results, table = compare(args.compare, args.dataset, files, overrides, args.out_dir, args.seeds, args.baseline)
        print(table)
        print(f"\nwritten to {results[0]['table_file']} and beside it the .csv")
        return 0
    result = run_recbole_rag(args.model or "SASRec", args.dataset, files, overrides)
    print(f"best valid: {dict2str(result['best_valid_result']) or 'none (no epoch was validated)'}")
    print(f"test result: {dict2str(result['test_result'])}")
    return 0


def compare_cli(argv):
    if argv and argv[0] in ("-h", "--help"):
        build_parser("compare").parse_args(["--help"])  # prints compare's help and exits 0, as argparse does
    if not argv or argv[0].startswith("-"):
        raise ConfigError("compare needs the models first, e.g. recbole-rag compare SASRec,DuoRec --dataset=ml-100k.")
    return run_cli([f"--compare={argv[0]}", *argv[1:]])


def build_significance_parser():
    parser = CommandParser(
        prog="recbole-rag significance",
        description="Is run B better than run A beyond chance? Both checkpoints are evaluated on their test "
        "split and compared user by user: the difference, a 95% bootstrap interval and two-sided p-values.",
        epilog="Any other --key=value overrides a setting of both saved runs (e.g. --data_path where the data moved).",
        allow_abbrev=False,
    )
    parser.add_argument("--checkpoints", required=True, help="A.pth,B.pth: the baseline first")
    parser.add_argument("--metrics", default=",".join(TESTED), help=f"metrics to test (default {','.join(TESTED)})")
    return parser


def significance_cli(argv):
    args, rest = build_significance_parser().parse_known_args(argv)
    files = [f.strip() for f in args.checkpoints.split(",") if f.strip()]
    if len(files) != 2:
        raise ConfigError(f"--checkpoints needs exactly two files, A.pth,B.pth, got {len(files)}.")
    metrics = [m.strip().lower() for m in args.metrics.split(",") if m.strip()]
    overrides = parse_overrides(rest)
    (result_a, users_a), (result_b, users_b) = (evaluate(f, overrides, per_user=True) for f in files)
    print(f"A: {files[0]}\n   test result: {dict2str(result_a)}")
    print(f"B: {files[1]}\n   test result: {dict2str(result_b)}")
    print("B against A, paired over the same test users:")
    for test in compare_runs(users_a, users_b, check_metrics(metrics, users_a)):
        print(f"  {test.describe()}")
    return 0


COMMANDS = {
    "run": run_cli,
    "compare": compare_cli,
    "recommend": recommend_cli,
    "evaluate": evaluate_cli,
    "significance": significance_cli,
    "pipeline": pipeline.cli,
    "convert": convert.cli,
    "distributed": distributed.cli,
}


def main(argv=None):
    """``recbole-rag [COMMAND] ...``; without a command, ``run``. Returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    name = argv[0] if argv and not argv[0].startswith("-") else "run"
    rest = argv[1:] if argv and argv[0] == name else argv
    if name not in COMMANDS:
        return command(lambda: _unknown(name))
    return command(lambda: COMMANDS[name](rest))


def _unknown(name):
    raise ConfigError(f"Unknown command '{name}': one of {', '.join(COMMANDS)} (run is the default).")
