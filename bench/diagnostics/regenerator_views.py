"""How a trained regenerator uses DR4SR's diversity promoter: which of its K views the condition
encoder picks for the mined patterns, and how many distinct sequences a user's K decodes give.

    python -m bench.diagnostics regenerator_views --checkpoint=<a Regenerator .pth> [--patterns=4000] [--users=2000]
        [--key=value ...]

A promoter that works spreads the patterns over the views and gives each user up to K different
regenerated sequences; one that collapsed picks one view for every pattern, and a user's K
decodes agree. Picks are the condition encoder's own (its logits, no Gumbel noise). Patterns
and users are a random sample (the run's seed); ``--key=value`` overrides the saved run's
settings (e.g. ``--data_path`` when the run's relative paths point elsewhere).
"""

import sys

import numpy as np
import torch

import recbole_rag  # noqa: F401  (compat shims before RecBole)
from recbole_rag.errors import CheckpointError, CommandParser, ConfigError, command
from recbole_rag.inference import load_data_and_model
from recbole_rag.overrides import parse_overrides
from recbole_rag.regeneration.inference import decode_view, view_logits
from recbole_rag.regeneration.patterns import mine_configured, training_sequences
from recbole_rag.trainer.regenerator_trainer import last_items


def _sample(n, size, seed):
    return np.sort(np.random.default_rng(seed).choice(n, min(size, n), replace=False))


def load_regenerator(model_file, config_dict=None):
    """(config, model, dataset, items, offsets) of a saved Regenerator run: the model in eval
    mode and the training sequences it was trained from (``training_sequences``)."""
    config, model, dataset, train_data, _, _ = load_data_and_model(model_file, config_dict)
    if config["model"] != "Regenerator":
        raise CheckpointError(f"'{model_file}' is a {config['model']} checkpoint, not a Regenerator's.")
    _, items, offsets = training_sequences(train_data.dataset, config)
    return config, model, dataset, items, offsets


@torch.no_grad()
def view_use(model_file, n_patterns=4000, n_users=2000, config_dict=None, batch_size=512):
    """{'picks': patterns per view (K,), 'pick_weight': mean top softmax weight at the saved
    temperature, 'distinct': users by number of distinct decodes (index = count; an empty or
    one-item decode counts as one, though the set keeps only sequences of 2+ items), 'lengths':
    decoded items per (user, view)} over samples of the mined patterns and of the users."""
    config, model, _, items, offsets = load_regenerator(model_file, config_dict)
    if model.n_conditions < 2:
        raise ConfigError(f"'{model_file}' has one view (regen_conditions: 1): there is no pick to measure.")
    patterns = mine_configured(items, offsets, config)
    device = model.embedding.weight.device
    chosen = torch.from_numpy(patterns.items[_sample(len(patterns), n_patterns, config["seed"])]).to(device)
    logits = view_logits(model, chosen, batch_size)
    picks = torch.bincount(logits.argmax(1), minlength=model.n_conditions).cpu().numpy()
    pick_weight = float(torch.softmax(logits / model.tau, 1).max(1).values.mean())

    sequences = torch.from_numpy(last_items(items, offsets, model.max_seq_length))
    sequences = sequences[_sample(len(sequences), n_users, config["seed"])]
    distinct = np.zeros(model.n_conditions + 1, np.int64)
    lengths = []
    for batch in sequences.split(batch_size):
        batch = batch.to(device)
        memory, padding = model.encode(batch)
        decodes = [decode_view(model, memory, padding, batch, k).cpu().numpy() for k in range(model.n_conditions)]
        for row in range(len(batch)):
            outputs = {tuple(int(t) for t in decoded[row] if t) for decoded in decodes}
            distinct[len(outputs)] += 1
            lengths.extend(int((decoded[row] > 0).sum()) for decoded in decodes)
    return {"picks": picks, "pick_weight": pick_weight, "distinct": distinct, "lengths": np.array(lengths)}


def main(argv=None):
    return command(lambda: report(*parse(argv)))


def parse(argv):
    parser = CommandParser(prog="bench.regenerator_views", description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--checkpoint", required=True, help="a Regenerator run's saved model file (best or -last)")
    parser.add_argument("--patterns", type=int, default=4000, help="mined patterns to sample (default 4000)")
    parser.add_argument("--users", type=int, default=2000, help="users to decode (default 2000)")
    args, rest = parser.parse_known_args(argv)
    return args, parse_overrides(rest)


def report(args, overrides):
    if args.patterns < 1 or args.users < 1:
        raise ConfigError(f"--patterns and --users must be >= 1, got {args.patterns} and {args.users}.")
    use = view_use(args.checkpoint, args.patterns, args.users, overrides)
    picks, distinct, lengths = use["picks"], use["distinct"], use["lengths"]
    print(f"{args.checkpoint}: {len(picks)} views")
    print(f"  {picks.sum()} mined patterns by picked view: {' / '.join(map(str, picks))}")
    print(f"  mean weight of the picked view (softmax at the saved temperature): {use['pick_weight']:.5f}")
    print(
        f"  {distinct.sum()} users by distinct decodes of their {len(picks)} views: "
        + ", ".join(f"{n}: {count}" for n, count in enumerate(distinct) if n and count)
    )
    counts = np.bincount(lengths)
    print(
        f"  decoded items per (user, view): mean {lengths.mean():.2f}; "
        + ", ".join(f"{n}: {count}" for n, count in enumerate(counts) if count)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
