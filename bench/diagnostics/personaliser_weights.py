"""What DR4SR+'s scorer learned: the weights it gives the training rows, without its Gumbel noise.

    python -m bench.diagnostics personaliser_weights --checkpoint=<a DR4SR+ run's .pth> [--key=value ...]

The training log's per-epoch line (``row weights mean m, std s``) describes sampled weights,
Gumbel noise included: at temperature 10, noise alone spreads weights of 0.5 by about 0.045.
This prints the scorer's own probabilities (the model's sequence vectors in eval mode, no noise)
over every training row that is not a mined pattern, one noisy draw at the same rows beside them,
and the rank correlation of the weights with each row's loss. ``--key=value`` overrides the saved
run's settings (e.g. ``--data_path`` when the run's relative paths point elsewhere).
"""

import sys

import numpy as np
import torch

import recbole_rag  # noqa: F401  (compat shims before RecBole)
from recbole_rag.errors import CheckpointError, CommandParser, command
from recbole_rag.inference import load_data_and_model
from recbole_rag.overrides import parse_overrides
from recbole_rag.trainer import load_checkpoint
from recbole_rag.trainer.personaliser import RowScorer, loss_parts, pattern_users


def _ranks(values):
    return np.argsort(np.argsort(values)).astype(np.float64)


def learned_weights(model_file, config_dict=None, batch_size=4096):
    """Statistics of the saved scorer's weights over the saved run's training rows."""
    saved = load_checkpoint(model_file).get("personaliser")
    if not saved:
        raise CheckpointError(f"'{model_file}' holds no DR4SR+ scorer: it was not saved by a personalise run.")
    config, model, _, train_data, _, _ = load_data_and_model(model_file, config_dict)
    scorer = RowScorer(model.item_embedding.weight.shape[1], max(config["personalise_tau"], 1.0))
    scorer.load_state_dict(saved["scorer"])
    scorer.to(config["device"]).eval()
    dataset = train_data.dataset
    pattern_user = pattern_users(dataset)
    rows = dataset.inter_feat
    learned, noisy, losses = [], [], []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            keep = ~pattern_user[batch[dataset.uid_field]]
            ce, representation, _ = loss_parts(model, batch.to(config["device"]))
            learned.append(scorer.probability(representation).cpu()[keep])
            noisy.append(scorer(representation).cpu()[keep])
            losses.append(ce.cpu()[keep])
    learned, noisy, losses = (torch.cat(x).double().numpy() for x in (learned, noisy, losses))
    return {
        "rows": len(learned),
        "scorer_steps": saved["meta_steps_done"],
        "learned": learned,
        "noisy": noisy,
        "loss_rank_correlation": float(np.corrcoef(_ranks(learned), _ranks(losses))[0, 1]),
    }


def _describe(values):
    q = np.quantile(values, [0, 0.01, 0.5, 0.99, 1])
    return (
        f"mean {values.mean():.4f}, std {values.std():.4f}; "
        f"min {q[0]:.4f}, 1% {q[1]:.4f}, median {q[2]:.4f}, 99% {q[3]:.4f}, max {q[4]:.4f}"
    )


def main(argv=None):
    return command(lambda: _main(argv))


def _main(argv):
    parser = CommandParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a DR4SR+ run's saved model file (best or -last)")
    args, rest = parser.parse_known_args(argv)
    return report(args.checkpoint, parse_overrides(rest))


def report(checkpoint, overrides):
    stats = learned_weights(checkpoint, overrides)
    rows, steps = stats["rows"], stats["scorer_steps"]
    print(f"{checkpoint}: {rows} training rows (mined patterns left out), {steps} scorer steps")
    print(f"  scorer's weights, no noise: {_describe(stats['learned'])}")
    print(f"  one Gumbel draw, as trained: {_describe(stats['noisy'])}")
    print(f"  rank correlation of the scorer's weight with the row's loss: {stats['loss_rank_correlation']:+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
