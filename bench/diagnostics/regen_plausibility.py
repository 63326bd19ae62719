"""How plausible each item of a regenerated sequence is to a model trained on the original data.

    python -m bench.diagnostics regen_plausibility --regenerator=<a Regenerator .pth> --scorer=<a SASRec .pth>
        [--users=2000] [--min_len=N] [--window=3] [--key=value ...]

Decodes a random sample of users through every view of the regenerator (``--min_len``: no end
before that many items, as ``regen_min_len``; default as saved) and, for each distinct regenerated
sequence s (of 2+ items, as the set keeps them), ranks each item s[j] among all items by the
scorer (any sequential model of the same dataset) given s[:j]: a rank near 1 is an item the
scorer expects after that prefix, a large one is noise to a model trained on the set. Beside it,
the same ranks for as many mined patterns of 3+ items and for one window of ``--window``
consecutive items of each sampled user's training sequence (real data, which the scorer has
trained on). By position j (the 2nd, 3rd, ... item): median rank and the share ranked in the
top 10 and top 100.
"""

import sys

import numpy as np
import torch
from recbole.data.interaction import Interaction

import recbole_rag  # noqa: F401  (compat shims before RecBole)
from bench.diagnostics.regenerator_views import load_regenerator
from recbole_rag.checkpoint import check_same_items, load_checkpoint
from recbole_rag.errors import CheckpointError, CommandParser, ConfigError, command, is_count
from recbole_rag.inference import load_data_and_model
from recbole_rag.overrides import parse_overrides
from recbole_rag.regeneration.inference import regenerate_sequences
from recbole_rag.regeneration.patterns import mine_configured
from recbole_rag.trainer.regenerator_trainer import last_items


@torch.no_grad()
def ranks(scorer, sequences, batch_size=1024):
    """{j: ranks (1 = best) of s[j] given s[:j] over every sequence s with a j-th item}."""
    prefixes = [(s[:j], s[j], j) for s in sequences for j in range(1, len(s))]
    width = max((len(p) for p, _, _ in prefixes), default=1)
    out = {}
    device = scorer.item_embedding.weight.device
    for start in range(0, len(prefixes), batch_size):
        part = prefixes[start : start + batch_size]
        history = torch.zeros(len(part), width, dtype=torch.long)
        for row, (prefix, _, _) in enumerate(part):
            history[row, : len(prefix)] = torch.as_tensor(prefix)
        lengths = torch.tensor([len(p) for p, _, _ in part])
        batch = Interaction({scorer.ITEM_SEQ: history, scorer.ITEM_SEQ_LEN: lengths}).to(device)
        scores = scorer.full_sort_predict(batch).view(len(part), -1)
        scores[:, 0] = -torch.inf  # the padding id is no item
        targets = torch.tensor([t for _, t, _ in part], device=device)
        rank = (scores > scores.gather(1, targets[:, None])).sum(1) + 1
        for (_, _, j), r in zip(part, rank.tolist()):
            out.setdefault(j, []).append(r)
    return {j: np.array(r) for j, r in sorted(out.items())}


def windows(items, offsets, users, length, seed):
    """One random window of ``length`` consecutive items from each user's training sequence."""
    rng = np.random.default_rng(seed)
    out = []
    for u in users:
        start, end = offsets[u], offsets[u + 1]
        if end - start >= length:
            first = start + rng.integers(0, end - start - length + 1)
            out.append(tuple(items[first : first + length].tolist()))
    return out


@torch.no_grad()
def plausibility(regenerator_file, scorer_file, n_users=2000, min_len=None, window=3, config_dict=None):
    """{source: {j: ranks}} for the distinct regenerated sequences of the sampled users, as many
    mined patterns of 3+ items, and one window of ``window`` items of each sampled user.
    ``min_len`` None decodes as the regenerator was saved (its ``regen_min_len``)."""
    config, model, dataset, items, offsets = load_regenerator(regenerator_file, config_dict)
    if min_len is not None:
        if not is_count(min_len) or min_len >= model.max_len:
            raise ConfigError(f"--min_len must be an integer from 0 to {model.max_len - 1}, got {min_len!r}.")
        model.min_len = min_len
    if not is_count(window, 2):
        raise ConfigError(f"--window must be an integer >= 2, got {window!r}.")
    check_same_items(load_checkpoint(scorer_file), dataset, scorer_file)
    scorer_config, scorer, _, _, _, _ = load_data_and_model(scorer_file, config_dict)
    if scorer_config["model"] == "Regenerator":
        raise CheckpointError(f"'{scorer_file}' is a Regenerator: the scorer must be a ranking model.")
    n_sequences = len(offsets) - 1
    rng = np.random.default_rng(config["seed"])
    users = np.sort(rng.choice(n_sequences, min(n_users, n_sequences), replace=False))
    sources = torch.from_numpy(last_items(items, offsets, model.max_seq_length))[users]
    regenerated = regenerate_sequences(model, sources)
    patterns = mine_configured(items, offsets, config)
    long_patterns = [tuple(int(t) for t in p if t) for p in patterns.items[patterns.lengths >= 3]]
    long_patterns = [long_patterns[i] for i in rng.permutation(len(long_patterns))[: len(regenerated)]]
    return {
        f"regenerated (min_len {model.min_len})": ranks(scorer, regenerated),
        "mined patterns of 3+ items": ranks(scorer, long_patterns),
        f"training windows of {window} items": ranks(scorer, windows(items, offsets, users, window, config["seed"])),
    }


def main(argv=None):
    return command(lambda: report(*parse(argv)))


def parse(argv):
    parser = CommandParser(prog="bench.regen_plausibility", description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--regenerator", required=True, help="a Regenerator run's saved model file")
    parser.add_argument("--scorer", required=True, help="a sequential model's saved file, same dataset")
    parser.add_argument("--users", type=int, default=2000, help="users to decode (default 2000)")
    parser.add_argument("--min_len", type=int, default=None, help="no end before this many items (default: as saved)")
    parser.add_argument("--window", type=int, default=3, help="items per training window (default 3)")
    args, rest = parser.parse_known_args(argv)
    return args, parse_overrides(rest)


def report(args, overrides):
    if args.users < 1:
        raise ConfigError(f"--users must be >= 1, got {args.users}.")
    results = plausibility(args.regenerator, args.scorer, args.users, args.min_len, args.window, overrides)
    print("| sequences | item | ranked | median rank | top 10 | top 100 |")
    print("|---|---|---|---|---|---|")
    for source, by_position in results.items():
        for j, r in by_position.items():
            print(
                f"| {source} | item {j + 1} | {len(r)} | {np.median(r):.0f} | {(r <= 10).mean():.1%} "
                f"| {(r <= 100).mean():.1%} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
