"""Time pattern mining (recbole_rag.regeneration.patterns) on a RecBole dataset's training split
and on a synthetic set of about 300k interactions (amazon-sports-outdoors' size).

    python -m bench.diagnostics mining_time --dataset=amazon-beauty --data_path=DATA_PATH \
        [--window=5] [--min_support=2] [--max_len=5]    (the reference's values; --window=0: consecutive)
"""

import sys
import time

import numpy as np

import recbole_rag  # noqa: F401  (compat shims before RecBole)
from recbole_rag import Config
from recbole_rag.data import load_dataset
from recbole_rag.errors import CommandParser, command
from recbole_rag.overrides import parse_overrides
from recbole_rag.regeneration.patterns import mine_patterns, training_sequences


def synthetic_sequences(n_interactions=300_000, n_items=18_000, mean_length=8, seed=0):
    """Random users (lengths 5..2*mean_length-5) whose next item is often the previous + 1."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 2 * mean_length - 4, n_interactions // mean_length)
    items = rng.integers(1, n_items + 1, int(lengths.sum()))
    follow = rng.random(len(items)) < 0.5
    for i in np.flatnonzero(follow[1:]) + 1:  # a Markov-ish chain so patterns exist
        items[i] = items[i - 1] % n_items + 1
    return items, np.r_[0, np.cumsum(lengths)]


def timed(name, items, offsets, args):
    start = time.perf_counter()
    patterns = mine_patterns(items, offsets, args.min_support, args.min_len, args.max_len, args.window or None)
    seconds = time.perf_counter() - start
    by_length = np.bincount(patterns.lengths, minlength=args.max_len + 1)[args.min_len :]
    print(
        f"{name}: {len(offsets) - 1} sequences, {len(items)} items -> {len(patterns)} patterns "
        f"(lengths {args.min_len}..: {by_length.tolist()}), {len(patterns.occurrences)} <sequence, pattern> "
        f"pairs in {seconds:.2f}s"
    )


def main(argv=None):
    return command(lambda: _main(argv))


def _main(argv):
    parser = CommandParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data_path", default=None, help="folder holding <dataset>/ (default: RecBole's)")
    parser.add_argument("--min_support", type=int, default=2)
    parser.add_argument("--min_len", type=int, default=2)
    parser.add_argument("--max_len", type=int, default=5)
    parser.add_argument("--window", type=int, default=5, help="gapped within this many positions; 0: consecutive")
    parser.add_argument("--synthetic", type=int, default=300_000, help="interactions of the synthetic set; 0: none")
    args, rest = parser.parse_known_args(argv)
    return time_mining(args, rest)


def time_mining(args, rest):
    settings = {"state": "ERROR", **parse_overrides(rest), **({"data_path": args.data_path} if args.data_path else {})}
    config = Config("Regenerator", args.dataset, config_dict=settings)
    train = load_dataset(config).build()[0]
    start = time.perf_counter()
    _, items, offsets = training_sequences(train, config)
    print(f"{args.dataset}: training sequences rebuilt in {time.perf_counter() - start:.2f}s")
    timed(args.dataset, items, offsets, args)
    if args.synthetic:
        timed("synthetic", *synthetic_sequences(args.synthetic), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
