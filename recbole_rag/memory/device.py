"""DeviceMemoryBank: RaSeRec's bank as tensors on the model's device, exact search as a matmul and
a top-k there, so a RAFT step on a GPU never waits for the host.

The faiss bank's semantics (ids in insertion order, ``exclude`` as ids or [start, stop) ranges,
``entries``) with torch tensors in and out. Keys are held once, as added; for ``metric='cosine'``
a vector of their norms scales the scores. ``memory_backend: auto`` (RaSeRec's default) picks it
when the model is on CUDA and the index is flat or auto; ``torch`` picks it anywhere (on a CPU too, e.g.
to test it); faiss stays the default elsewhere. It saves and loads as the faiss bank's file.
"""

from __future__ import annotations

import numpy as np
import torch

from recbole_rag.memory.bank import MemoryBank, check_bank_settings, checked_pairs, search_plan

SEARCH_ROWS = 512  # queries scored at a time
SEARCH_ENTRIES = 262_144  # entries scored at a time: at most (SEARCH_ROWS, SEARCH_ENTRIES) scores, 512 MiB


class DeviceMemoryBank:
    def __init__(self, dim: int, metric: str = "ip", device: str | torch.device = "cpu", **_faiss_settings) -> None:
        check_bank_settings("flat", metric)
        self.dim, self.metric, self.index_type, self.device = int(dim), metric, "flat", torch.device(device)
        self._keys = torch.zeros(0, self.dim, device=self.device)
        self._values = torch.zeros(0, dtype=torch.long, device=self.device)
        self._norms = torch.zeros(0, device=self.device)
        self._size = 0

    def __len__(self):
        return self._size

    @property
    def keys(self):
        """(n, dim) key vectors, as added (a view, on the device)."""
        return self._keys[: self._size]

    @property
    def values(self):
        return self._values[: self._size]

    def add(self, keys, values) -> np.ndarray:
        """Append pairs (arrays or tensors); returns their ids. Storage grows by doubling, so
        adding row by row stays linear."""
        if torch.is_tensor(keys):
            keys, values = keys.detach().float().cpu().numpy(), torch.as_tensor(values).cpu().numpy()
        keys, values = checked_pairs(keys, values, self.dim)
        n = self._size + len(keys)
        if n > len(self._keys):
            grown = max(n, 2 * len(self._keys))
            self._keys = torch.cat([self.keys, self._keys.new_zeros(grown - self._size, self.dim)])
            self._values = torch.cat([self.values, self._values.new_zeros(grown - self._size)])
            self._norms = torch.cat([self._norms[: self._size], self._norms.new_zeros(grown - self._size)])
        new_keys = torch.from_numpy(keys).to(self.device)
        self._keys[self._size : n] = new_keys
        self._values[self._size : n] = torch.from_numpy(values).to(self.device)
        self._norms[self._size : n] = new_keys.norm(dim=1).clamp_min(1e-12)
        ids = np.arange(self._size, n)
        self._size = n
        return ids

    def search(self, queries: torch.Tensor, k: int, exclude=None):
        """Top-k entries per query -> (scores (q, k), keys (q, k, dim), values (q, k), ids (q, k)),
        all tensors on the device; ``exclude`` as MemoryBank.search (array or tensor)."""
        queries = torch.as_tensor(queries, dtype=torch.float32, device=self.device)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (n, {self.dim}), got {tuple(queries.shape)}")
        # k is checked against the widest exclusion when it comes as an array; a tensor (a RAFT step's
        # rows, maybe on a GPU) is not read back to the host, and a query left with fewer than k
        # entries gets id -1 in the slots it lacks
        search_plan(len(self), k, None if torch.is_tensor(exclude) else exclude, len(queries))
        ranges = None
        if exclude is not None:
            ranges = torch.as_tensor(exclude, dtype=torch.long, device=self.device)
            ranges = torch.stack([ranges, ranges + 1], 1) if ranges.ndim == 1 else ranges.reshape(-1, 2)
        scores_out, ids_out = [], []
        for start in range(0, len(queries), SEARCH_ROWS):
            rows = None if ranges is None else ranges[start : start + SEARCH_ROWS]
            top_scores, top_ids = self._search_rows(queries[start : start + SEARCH_ROWS], k, rows)
            scores_out.append(top_scores)
            ids_out.append(top_ids)
        scores, ids = torch.cat(scores_out), torch.cat(ids_out)
        ids = torch.where(torch.isinf(scores), -1, ids)
        return (scores, *self.entries(ids), ids)

    def _search_rows(self, part, k, ranges):
        """Top-k (scores, ids) of some queries, the bank scored SEARCH_ENTRIES entries at a time
        (a bank larger than the device's memory allows for one score matrix still searches) and
        each chunk's top-k merged into the running one."""
        query_norms = part.norm(dim=1, keepdim=True).clamp_min(1e-12)
        best_scores = part.new_full((len(part), 0), float("-inf"))
        best_ids = torch.zeros(len(part), 0, dtype=torch.long, device=self.device)
        for begin in range(0, self._size, SEARCH_ENTRIES):
            end = min(begin + SEARCH_ENTRIES, self._size)
            scores = part @ self._keys[begin:end].T
            if self.metric == "cosine":
                scores = scores / query_norms / self._norms[begin:end]
            ids = torch.arange(begin, end, device=self.device)
            if ranges is not None:
                scores = scores.masked_fill((ids >= ranges[:, :1]) & (ids < ranges[:, 1:]), float("-inf"))
            top = scores.topk(min(k, end - begin), dim=1)  # ties: torch's order (faiss orders equal scores by id)
            merged_scores = torch.cat([best_scores, top.values], 1)
            merged_ids = torch.cat([best_ids, ids[top.indices]], 1)
            keep = merged_scores.topk(min(k, merged_scores.shape[1]), dim=1)
            best_scores, best_ids = keep.values, merged_ids.gather(1, keep.indices)
        return best_scores, best_ids

    def entries(self, ids):
        """Keys (..., dim) and values (...) of entry ids (any shape; tensor or array); id -1 gives
        a zero key and 0."""
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.device)
        found = ids.clamp_min(0)
        present = (ids >= 0).unsqueeze(-1)
        return self.keys[found] * present, self.values[found] * (ids >= 0)

    def to_faiss(self) -> MemoryBank:
        bank = MemoryBank(self.dim, "flat", self.metric)
        if len(self):
            bank.add(self.keys.cpu().numpy(), self.values.cpu().numpy())
        return bank

    @classmethod
    def from_faiss(cls, bank: MemoryBank, device) -> DeviceMemoryBank:
        moved = cls(bank.dim, bank.metric, device)
        if len(bank):
            moved.add(bank.keys, bank.values)
        return moved

    def save(self, path) -> None:
        """The faiss bank's file (a flat index), so either backend loads it."""
        self.to_faiss().save(path)

    def __repr__(self):
        return f"DeviceMemoryBank({len(self)} entries, dim={self.dim}, {self.metric}, on {self.device})"
