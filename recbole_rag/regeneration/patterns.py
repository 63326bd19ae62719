"""Item-transition patterns (DR4SR, arXiv 2405.17795): sub-sequences of the training sequences that
occur in at least ``min_support`` different sequences.

Two kinds, by ``window``: *gapped* patterns (the reference code's, mined there with Seq2Pat's
``max_span``): any ordered selection of items whose positions lie within ``window`` consecutive
positions of one sequence; or, with ``window=None``, *consecutive* ones (no item skipped).

Mining reads each user's *training* sequence only, rebuilt from RecBole's training split, so a
user's last two items (validation and test targets under leave-one-out) never enter a pattern.
Every placement of a pattern inside a window is enumerated with numpy (one array of candidate
windows per set of offsets, ``np.unique`` over them), so support is exact: a sequence counts when
any placement fits, as Seq2Pat counts it.
"""

import itertools
from dataclasses import dataclass

import numpy as np

from recbole_rag.errors import DatasetError


@dataclass
class Patterns:
    """Mined patterns, ids in the dataset's internal item ids.

    items: (P, max_len) item ids, 0-padded after ``lengths``; support: (P,) number of training
    sequences holding the pattern; occurrences: (O, 2) distinct [sequence index, pattern index]
    pairs, sorted by sequence (which sequence holds which pattern: the regenerator's targets).
    """

    items: np.ndarray
    lengths: np.ndarray
    support: np.ndarray
    occurrences: np.ndarray

    def __len__(self):
        return len(self.lengths)

    def subset(self, keep):
        """The patterns where ``keep`` (bool (P,)) holds, occurrences re-indexed."""
        new_index = np.cumsum(keep) - 1
        occ = self.occurrences[keep[self.occurrences[:, 1]]]
        return Patterns(
            self.items[keep], self.lengths[keep], self.support[keep], np.stack([occ[:, 0], new_index[occ[:, 1]]], 1)
        )


def training_sequences(train_dataset, config):
    """Each user's training sequence from RecBole's leave-one-out training rows.

    Returns (users (U,), items (N,), offsets (U + 1,)): user ``users[u]``'s sequence is
    ``items[offsets[u]:offsets[u + 1]]``, oldest first. A user's training rows are its prefixes
    of length 1, 2, ...; the sequence is the first row's single item, then every row's target.
    """
    feat = train_dataset.inter_feat
    users = feat[config["USER_ID_FIELD"]].numpy()
    lengths = feat[config["ITEM_LIST_LENGTH_FIELD"]].numpy()
    targets = feat[config["ITEM_ID_FIELD"]].numpy()
    order = np.lexsort((lengths, users))
    users, lengths, targets = users[order], lengths[order], targets[order]
    block_start = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    if len(users) and (lengths[block_start] != 1).any():
        raise DatasetError(
            "Pattern mining needs every user's full training sequence (RecBole's leave-one-out "
            "split of one .inter file); this training set has users whose first prefix is longer "
            "than one item (a benchmark_filename split?). Mine on the original dataset instead."
        )
    first_items = feat[config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]].numpy()[order[block_start], 0]
    items = np.insert(targets, block_start, first_items)
    counts = np.diff(np.r_[block_start, len(users)]) + 1
    offsets = np.r_[0, np.cumsum(counts)]
    return users[block_start], items.astype(np.int64), offsets.astype(np.int64)


def mine_configured(items, offsets, config):
    """``mine_patterns`` under a run's pattern settings (the regenerator's mining)."""
    return mine_patterns(
        items,
        offsets,
        config["pattern_min_support"],
        config["pattern_min_len"],
        config["pattern_max_len"],
        config["pattern_window"],
    )


def placements(length, window=None):
    """Offsets of a pattern's items from its first item: every choice inside ``window`` positions
    (gapped), or only (0, 1, ..., length - 1) when ``window`` is None (consecutive)."""
    if window is None:
        return [tuple(range(length))]
    return [(0, *rest) for rest in itertools.combinations(range(1, window), length - 1)]


def placed_windows(items, sequence_of, offsets):
    """(windows (n, len(offsets)), the sequence holding each): the items at ``offsets`` from
    every start whose placement stays inside one sequence."""
    starts = np.arange(max(len(items) - offsets[-1], 0))
    starts = starts[sequence_of[starts] == sequence_of[starts + offsets[-1]]]
    return np.stack([items[starts + j] for j in offsets], 1), sequence_of[starts]


def mine_patterns(items, offsets, min_support=2, min_len=2, max_len=3, window=None):
    """Frequent sub-sequences of length min_len..max_len (see ``Patterns``), gapped within
    ``window`` positions or, with ``window=None``, consecutive.

    items/offsets: the concatenated sequences and their boundaries (``training_sequences``).
    Raises DatasetError when no pattern reaches ``min_support``.
    """
    if not 2 <= min_len <= max_len:
        raise DatasetError(
            f"pattern lengths must satisfy 2 <= pattern_min_len <= pattern_max_len, got {min_len} and {max_len}."
        )
    if window is not None and not max_len <= window:
        raise DatasetError(
            f"pattern_max_len {max_len} cannot exceed pattern_window {window}: a pattern lies inside one window."
        )
    if min_support < 1:
        raise DatasetError(f"pattern_min_support must be >= 1, got {min_support}.")
    items, offsets = np.asarray(items, np.int64), np.asarray(offsets, np.int64)
    sequence_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    found = []  # per length: (windows of kept patterns, support, occurrences)
    for length in range(min_len, max_len + 1):
        placed = [placed_windows(items, sequence_of, offs) for offs in placements(length, window)]
        windows, holders = (np.concatenate(part) for part in zip(*placed))
        if not len(windows):
            continue
        unique, pattern_of = np.unique(windows, axis=0, return_inverse=True)
        occurrences = np.unique(np.stack([holders, pattern_of.reshape(-1)], 1), axis=0)
        support = np.bincount(occurrences[:, 1], minlength=len(unique))
        keep = support >= min_support
        padded = np.zeros((len(unique), max_len), np.int64)
        padded[:, :length] = unique
        found.append(Patterns(padded, np.full(len(unique), length), support, occurrences).subset(keep))
    if not found or sum(len(p) for p in found) == 0:
        raise DatasetError(
            f"No {'gapped' if window else 'consecutive'} item-transition pattern of length {min_len}-{max_len} "
            f"occurs in at least "
            f"{min_support} training sequences ({len(offsets) - 1} sequences, {len(items)} items): "
            "lower pattern_min_support, or regenerate a larger dataset."
        )
    return _concatenate(found)


def sequence_stats(sequences, items, offsets):
    """What regeneration produced: {"lengths": {length: count}, "novel_share": share of the
    sequences that occur nowhere in the training sequences as a contiguous run}."""
    items, offsets = np.asarray(items, np.int64), np.asarray(offsets, np.int64)
    sequence_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    lengths = sorted({len(q) for q in sequences})
    novel = 0
    for length in lengths:
        seen = {w.tobytes() for w in placed_windows(items, sequence_of, placements(length)[0])[0]}
        novel += sum(np.asarray(q, np.int64).tobytes() not in seen for q in sequences if len(q) == length)
    counts = {length: sum(len(q) == length for q in sequences) for length in lengths}
    return {"lengths": counts, "novel_share": round(novel / max(len(sequences), 1), 4)}


def sample_occurrences(occurrences, per_sequence, seed=0):
    """At most ``per_sequence`` random <sequence, pattern> pairs of each sequence (the reference
    pre-trains on at most 10 patterns per sequence); ``per_sequence`` None or 0 keeps them all.
    Sorted by sequence, as ``Patterns.occurrences``."""
    if not per_sequence:
        return occurrences
    shuffled = occurrences[np.random.default_rng(seed).permutation(len(occurrences))]
    shuffled = shuffled[np.argsort(shuffled[:, 0], kind="stable")]
    first = np.searchsorted(shuffled[:, 0], shuffled[:, 0])  # each row's sequence's first row
    kept = shuffled[np.arange(len(shuffled)) - first < per_sequence]
    return kept[np.lexsort((kept[:, 1], kept[:, 0]))]


def _concatenate(parts):
    shift = np.cumsum([0] + [len(p) for p in parts[:-1]])
    occurrences = np.concatenate([p.occurrences + [0, s] for p, s in zip(parts, shift)])
    occurrences = occurrences[np.lexsort((occurrences[:, 1], occurrences[:, 0]))]
    return Patterns(
        np.concatenate([p.items for p in parts]),
        np.concatenate([p.lengths for p in parts]),
        np.concatenate([p.support for p in parts]),
        occurrences,
    )
