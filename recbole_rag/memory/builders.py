"""Memory-bank builders other than RaSeRec's <prefix, next item> pairs.

``memory_source: patterns`` (the regeneration study's variant): one entry per prefix of each
mined item-transition pattern (p1..pk gives p1..pj -> p(j+1)), keyed by the backbone's vector
of the prefix. Patterns come from the dataset's ``.patterns`` file (written with a regenerated
dataset), else are mined from the training split.

Label leakage: a pattern mined partly from a training user's own sequence could hand that user's
training target to its query. The bank keeps only patterns held by at least
``pattern_bank_min_support`` users; with that above the mining threshold, every entry would
still be frequent without any single user, i.e. the bank a training query sees is one that
could have been mined without its own target, as at test time (test items are never mined).
"""

import os

import numpy as np
import torch
from recbole.data.interaction import Interaction

from recbole_rag.errors import ConfigError, DatasetError, is_count
from recbole_rag.regeneration.patterns import mine_patterns, training_sequences
from recbole_rag.regeneration.writer import read_patterns

MEMORY_SOURCES = ("pairs", "patterns")


def pattern_prefixes(pattern_items, max_len):
    """(P, k) 0-padded patterns -> (sequences (n, max_len), lengths (n,), next items (n,))."""
    lengths = (pattern_items > 0).sum(1)
    rows, cols = np.nonzero(np.arange(1, pattern_items.shape[1])[None, :] < lengths[:, None])
    prefix_len = cols + 1
    sequences = np.zeros((len(rows), max_len), np.int64)
    width = min(pattern_items.shape[1], max_len)
    keep = np.arange(width)[None, :] < prefix_len[:, None]
    sequences[:, :width] = np.where(keep, pattern_items[rows, :width], 0)
    return sequences, prefix_len, pattern_items[rows, prefix_len]


def load_or_mine_patterns(train_dataset, config):
    """(items, support) of the dataset's ``.patterns`` file, else mined from its training split."""
    path = os.path.join(config["data_path"], f"{config['dataset']}.patterns")
    if os.path.isfile(path):
        return read_patterns(path, train_dataset)
    _, items, offsets = training_sequences(train_dataset, config)
    patterns = mine_patterns(items, offsets, config["pattern_bank_min_support"], 2, config["pattern_max_len"] or 3)
    return patterns.items, patterns.support


def build_pattern_memory(model, train_dataset, config, show_progress=False):
    """A bank of pattern prefixes for ``model`` (RaSeRec) -> (bank, entry_stop).

    entry_stop[i] = i + 1: a bank entry's own range is itself (no entry belongs to a user).
    """
    min_support = config["pattern_bank_min_support"]
    if not is_count(min_support, 1):
        raise ConfigError(f"pattern_bank_min_support must be an integer >= 1, got {min_support!r}.")
    items, support = load_or_mine_patterns(train_dataset, config)
    items = items[support >= min_support]
    if not len(items):
        raise DatasetError(
            f"No mined pattern is held by >= pattern_bank_min_support={min_support} users: lower it, "
            "or use memory_source: pairs."
        )
    sequences, lengths, next_items = pattern_prefixes(items, model.max_seq_length)
    prefixes = Interaction(
        {
            model.ITEM_SEQ: torch.from_numpy(sequences),
            model.ITEM_SEQ_LEN: torch.from_numpy(lengths),
            model.POS_ITEM_ID: torch.from_numpy(next_items),
        }
    )
    model.memory = None
    model.add_to_memory(prefixes, config["eval_batch_size"], show_progress)
    return model.memory, np.arange(1, len(model.memory) + 1)


def check_memory_source(source):
    """The configured memory source (None: pairs), or a ConfigError."""
    if source is None:
        return "pairs"
    if source not in MEMORY_SOURCES:
        raise ConfigError(f"memory_source must be one of {', '.join(MEMORY_SOURCES)}, got {source!r}.")
    return source
