"""Item-transition patterns (DR4SR, arXiv 2405.17795): consecutive sub-sequences of the training
sequences that occur in at least ``min_support`` different sequences.

Mining reads each user's *training* sequence only, rebuilt from RecBole's training split, so a
user's last two items (validation and test targets under leave-one-out) never enter a pattern.
Counting is vectorised with numpy (a sliding window per pattern length, ``np.unique`` over the
windows), which mines ~300k interactions in seconds.
"""

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


def mine_patterns(items, offsets, min_support=2, min_len=2, max_len=3):
    """Frequent consecutive sub-sequences of length min_len..max_len (see ``Patterns``).

    items/offsets: the concatenated sequences and their boundaries (``training_sequences``).
    Raises DatasetError when no pattern reaches ``min_support``.
    """
    if not 2 <= min_len <= max_len:
        raise DatasetError(
            f"pattern lengths must satisfy 2 <= pattern_min_len <= pattern_max_len, got {min_len} and {max_len}."
        )
    if min_support < 1:
        raise DatasetError(f"pattern_min_support must be >= 1, got {min_support}.")
    items, offsets = np.asarray(items, np.int64), np.asarray(offsets, np.int64)
    sequence_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    found = []  # per length: (windows of kept patterns, support, occurrences)
    for length in range(min_len, max_len + 1):
        starts = np.arange(max(len(items) - length + 1, 0))
        starts = starts[sequence_of[starts] == sequence_of[starts + length - 1]]  # inside one sequence
        if not len(starts):
            continue
        windows = np.stack([items[starts + j] for j in range(length)], 1)
        unique, pattern_of = np.unique(windows, axis=0, return_inverse=True)
        occurrences = np.unique(np.stack([sequence_of[starts], pattern_of.reshape(-1)], 1), axis=0)
        support = np.bincount(occurrences[:, 1], minlength=len(unique))
        keep = support >= min_support
        padded = np.zeros((len(unique), max_len), np.int64)
        padded[:, :length] = unique
        found.append(Patterns(padded, np.full(len(unique), length), support, occurrences).subset(keep))
    if not found or sum(len(p) for p in found) == 0:
        raise DatasetError(
            f"No item-transition pattern of length {min_len}-{max_len} occurs in at least "
            f"{min_support} training sequences ({len(offsets) - 1} sequences, {len(items)} items): "
            "lower pattern_min_support, or regenerate a larger dataset."
        )
    return _concatenate(found)


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
