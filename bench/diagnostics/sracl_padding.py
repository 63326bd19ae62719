"""Two of SRA-CL's differences from the authors' code, measured on a dataset's item texts: padding
as a substitute, and normalised semantic vectors.

    python -m bench.diagnostics sracl_padding --dataset=amazon-beauty --data_path=P \
        [--config_files=sracl-authors] [--key=value ...]

The authors embed the text "None" as the padding item's and rank every item's substitutes over
all rows, padding's included (their main.py: cosine similarity, the item's own row dropped as its
nearest), so an item whose ``substitute_k`` nearest include "None" can be replaced by padding; ours
never substitutes padding. Printed: how many items have "None" among their ``substitute_k``
nearest, and the share of the items in training inputs they make up (times 1/k, the chance a
substitution of one of them draws padding). And the sentence model's raw vector lengths: theirs
(SimCSE's pooler) are not unit length, ours are normalised. Item vectors come from the run's
semantic cache (``--semantic_cache``; embedded first where missing, as a run would).
"""

import sys

import numpy as np

import recbole_rag  # noqa: F401  (compat shims before RecBole)
from recbole_rag.config import Config
from recbole_rag.errors import CommandParser, command
from recbole_rag.overrides import parse_overrides
from recbole_rag.semantic.build import normalise

PADDING_TEXT = "None"  # the authors' text for item 0 (obtain_text_emb_item.py)


def padding_neighbours(item_vectors, padding_vector, k, chunk=2048):
    """(n,) bool: items (rows 1..n of ``item_vectors``, row 0 padding's, ignored) whose k nearest
    other items by cosine, padding's vector competing, include padding."""
    items = normalise(item_vectors[1:])
    padding = normalise(padding_vector[None])[0]
    to_padding = items @ padding
    inside = np.zeros(len(items), bool)
    for start in range(0, len(items), chunk):
        sims = items[start : start + chunk] @ items.T
        np.fill_diagonal(sims[:, start : start + chunk], -np.inf)  # an item is not its own substitute
        kth = np.partition(sims, -k, axis=1)[:, -k]
        inside[start : start + chunk] = to_padding[start : start + chunk] > kth
    return inside


def measure(config):
    """{'items', 'with_padding', 'occurrences', 'share', 'raw_norms'} on ``config``'s dataset."""
    from recbole.data import data_preparation

    from recbole_rag.data import load_dataset
    from recbole_rag.semantic import build_semantics
    from recbole_rag.semantic.embed import load_sentence_model

    train_data, _, _ = data_preparation(config, load_dataset(config))
    dataset = train_data.dataset
    semantics = build_semantics(config, dataset, user_texts=False)
    model = load_sentence_model(config["semantic_model"], config["semantic_pooling"])
    padding = model.encode([PADDING_TEXT], normalize_embeddings=True)[0]
    inside = padding_neighbours(semantics.item_vectors, padding, config["substitute_k"])
    inputs = dataset.inter_feat[config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]].numpy()  # what substitute() reads
    counts = np.bincount(inputs[inputs > 0], minlength=len(semantics.item_vectors))[1:]
    raw = model.encode([PADDING_TEXT, "a", "a longer text about an item"], normalize_embeddings=False)
    return {
        "items": len(inside),
        "with_padding": int(inside.sum()),
        "occurrences": int(counts.sum()),
        "share": float(counts[inside].sum() / counts.sum()),
        "raw_norms": np.linalg.norm(raw, axis=1),
    }


def main(argv=None):
    return command(lambda: _main(argv))


def _main(argv):
    parser = CommandParser(prog="bench.sracl_padding", description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--config_files", default="", help="space-separated files or shipped presets")
    args, rest = parser.parse_known_args(argv)
    files = args.config_files.split() or None
    config = Config("SRACL", args.dataset, files, {"show_progress": False, **parse_overrides(rest)})
    found = measure(config)
    k = config["substitute_k"]
    print(f"{args.dataset}, {config['semantic_model']}: {found['items']} items, substitute_k {k}")
    print(
        f"'{PADDING_TEXT}' among the {k} nearest of {found['with_padding']} items "
        f"({found['with_padding'] / found['items']:.2%}), {found['share']:.2%} of the "
        f"{found['occurrences']} items of the training inputs; a substitution of one of them draws "
        f"padding with probability 1/{k}"
    )
    print("raw vector lengths (no normalisation): " + ", ".join(f"{n:.4f}" for n in found["raw_norms"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
