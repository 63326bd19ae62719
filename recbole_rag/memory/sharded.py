"""ShardedMemoryBank: one memory spread over several MemoryBanks, searched shard by shard and
merged -- the layout of a bank too large for one index (or one machine), where each shard
would live on its own server and only the top-k of each travels back.

Entry ids are global (0, 1, 2, ... in insertion order, as in one MemoryBank); each ``add`` is
split into contiguous slices, one per shard, so a shard's global ids always increase and an
exclusion range [start, stop) is one local range per shard. With flat shards ``search`` returns
exactly what one flat bank over all entries returns.
"""

import numpy as np

from recbole_rag.errors import ConfigError
from recbole_rag.memory.bank import MemoryBank, exclusion_ranges


class ShardedMemoryBank:
    def __init__(self, dim, n_shards, **bank_settings):
        if not isinstance(n_shards, int) or n_shards < 1:
            raise ConfigError(f"n_shards must be an integer >= 1, got {n_shards!r}")
        self.dim = int(dim)
        self.shards = [MemoryBank(dim, **bank_settings) for _ in range(n_shards)]
        self.global_ids = [np.zeros(0, dtype=np.int64) for _ in range(n_shards)]  # per shard: local -> global
        self.shard_of = np.zeros(0, dtype=np.int64)  # global id -> shard
        self.local_of = np.zeros(0, dtype=np.int64)  # global id -> id inside its shard

    def __len__(self):
        return len(self.shard_of)

    def add(self, keys, values):
        """Append pairs, spread evenly over the shards; returns their global ids."""
        keys, values = np.asarray(keys, dtype=np.float32), np.asarray(values, dtype=np.int64).reshape(-1)
        if len(keys) != len(values):
            raise ValueError(f"add() got {len(keys)} keys but {len(values)} values")
        first = len(self)
        bounds = np.linspace(0, len(values), len(self.shards) + 1).astype(np.int64)
        for s, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
            if stop == start:
                continue
            local = self.shards[s].add(keys[start:stop], values[start:stop])
            self.global_ids[s] = np.concatenate([self.global_ids[s], np.arange(first + start, first + stop)])
            self.shard_of = np.concatenate([self.shard_of, np.full(stop - start, s)])
            self.local_of = np.concatenate([self.local_of, local])
        return np.arange(first, len(self))

    def search(self, queries, k, exclude=None):
        """As ``MemoryBank.search``: (scores, keys, values, ids), ids global, best first."""
        if len(self) == 0:
            raise ValueError("the memory bank is empty: add() pairs before search()")
        queries = np.asarray(queries, dtype=np.float32)
        ranges = exclusion_ranges(exclude)
        all_scores, all_ids = [], []
        for shard, global_ids in zip(self.shards, self.global_ids):
            if len(shard) == 0:
                continue
            local_ranges = None if ranges is None else np.searchsorted(global_ids, ranges)
            extra = 0 if local_ranges is None else int((local_ranges[:, 1] - local_ranges[:, 0]).max(initial=0))
            shard_k = min(k, len(shard) - extra)
            if shard_k < 1:
                continue
            scores, _, _, local = shard.search(queries, shard_k, local_ranges)
            all_scores.append(scores)
            all_ids.append(np.where(local >= 0, global_ids[np.maximum(local, 0)], -1))
        scores, ids = np.concatenate(all_scores, 1), np.concatenate(all_ids, 1)
        if not 0 < k <= scores.shape[1]:
            raise ValueError(f"k must be in [1, {scores.shape[1]}] for this bank and exclusion, got {k}")
        # best score first; equal scores by lower id, as one flat index orders them
        order = np.lexsort((np.where(ids < 0, len(self), ids), -scores), axis=1)[:, :k]
        scores, ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
        return (scores, *self.entries(ids), ids)

    def entries(self, ids):
        """Keys (..., dim) and values (...) of global ids; id -1 gives a zero key and 0."""
        ids = np.asarray(ids)
        keys = np.zeros(ids.shape + (self.dim,), dtype=np.float32)
        values = np.zeros(ids.shape, dtype=np.int64)
        for s, shard in enumerate(self.shards):
            mine = (ids >= 0) & (self.shard_of[np.maximum(ids, 0)] == s)
            if mine.any():
                keys[mine], values[mine] = shard.entries(self.local_of[ids[mine]])
        return keys, values

    def __repr__(self):
        return f"ShardedMemoryBank({len(self)} entries in {len(self.shards)} shards, dim={self.dim})"
