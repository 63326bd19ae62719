"""MemoryBank: <user-sequence vector, next item> pairs in a faiss index.

Small verbs on one object, like faiss itself: ``add``, ``search``, ``save``, ``load``, ``len``.
``search`` returns the retrieved key vectors as given (the retrieval-augmented attention attends
over them; with ``metric='cosine'`` only the index sees them L2-normalised), values are item ids.
Entry ids are 0, 1, 2, ... in insertion order, so a caller can exclude a query's own entry.

The approximate indexes (``ivf``, ``hnsw``) hold each key once: ``entries`` reads it back from
the index (times its norm under cosine). The flat index keeps the keys as given beside it, so the
exact path returns them bit for bit; ``memory_backend: torch`` is the flat bank held once.
"""

from __future__ import annotations

import json
import math
import operator
import os
import zipfile
from collections.abc import Collection

import faiss
import numpy as np
from numpy.typing import ArrayLike

from recbole_rag.errors import CheckpointError, ConfigError
from recbole_rag.files import atomic_path

INDEX_TYPES = ("auto", "flat", "ivf", "hnsw")
# auto: a bank whose first add (RaSeRec's training pairs) brings at least this many keys is an ivf
# with lists and probes from its size, a smaller one flat: past it an exact search costs more than
# the backbone's own full ranking (ml-100k's 96k pairs: inference 2.0x the backbone's exact,
# 1.1-1.3x as ivf; docs/raserec.md, "Exact or approximate search").
AUTO_IVF_MIN_ENTRIES = 50_000
METRICS = ("ip", "cosine")
FORMAT_VERSION = 2  # 1: every index type saved its keys beside the index
# ivf with at least this many lists finds a key's lists with an HNSW graph over the centroids, not
# a scan of them, and trains its k-means on at most TRAIN_POINTS_PER_LIST keys per list
HNSW_QUANTIZER_MIN_LISTS = 4096
TRAIN_POINTS_PER_LIST = 64
# faiss scores a batch with one BLAS matrix product only when queries x dim reaches this value;
# its default (128,000 in faiss 1.15: 2,000 queries of 64-d) leaves a RAFT step's 256 queries and
# most evaluation batches to a per-query loop about 4x slower. From 8 queries of 64-d on, BLAS
# is the faster (docs/results.md, "Speed"). Older faiss counts queries alone (default 20): kept.
BLAS_THRESHOLD = 512
faiss.cvar.distance_compute_blas_threshold = min(faiss.cvar.distance_compute_blas_threshold, BLAS_THRESHOLD)


def index_for_size(index_type: str, n: int) -> str:
    """The index ``index_type`` stands for in a bank whose first add brings ``n`` keys: ``auto``
    is ivf from ``AUTO_IVF_MIN_ENTRIES`` keys on, else flat; any other type is itself."""
    if index_type != "auto":
        return index_type
    return "ivf" if n >= AUTO_IVF_MIN_ENTRIES else "flat"


def auto_nlist(n: int) -> int:
    """IVF lists for a bank of ``n`` keys when ``nlist`` is not set: the power of two nearest
    4 * sqrt(n) (faiss's guideline is 4-16 * sqrt(n)), at most n / 39 (k-means wants >= 39
    points per centroid). 10^5 -> 1024, 10^6 -> 4096, 10^7 -> 16384."""
    by_size = 2 ** round(math.log2(4 * math.sqrt(max(n, 1))))
    by_points = 2 ** int(math.log2(max(n // 39, 1)))
    return max(1, min(by_size, by_points))


def auto_nprobe(nlist: int) -> int:
    """Lists searched per query when ``nprobe`` is not set: sqrt(nlist) / 2, at least 16 (the
    setting that gave recall@10 >= 0.99 at nlist 1024 in results/scale.md), at most nlist."""
    return min(nlist, max(16, int(math.sqrt(nlist)) // 2))


def _as_matrix(array: ArrayLike, dim: int, what: str) -> np.ndarray:
    array = np.ascontiguousarray(np.asarray(array, dtype=np.float32))
    if array.ndim != 2 or array.shape[1] != dim:
        raise ValueError(f"{what} must have shape (n, {dim}), got {array.shape}")
    if not np.isfinite(array).all():  # a NaN query would silently retrieve nothing useful
        bad = int((~np.isfinite(array)).any(1).sum())
        raise ValueError(f"{what} hold NaN or inf in {bad} of {len(array)} rows: has the backbone diverged?")
    return array


def exclusion_ranges(exclude: ArrayLike | None) -> np.ndarray | None:
    """``exclude`` of ``search`` as (q, 2) [start, stop) id ranges; None stays None."""
    if exclude is None:
        return None
    ranges = np.asarray(exclude, dtype=np.int64)
    return np.stack([ranges, ranges + 1], 1) if ranges.ndim == 1 else ranges.reshape(-1, 2)


def check_bank_settings(
    index_type: str, metric: str, index_types: Collection[str] = INDEX_TYPES, backend: str | None = None
) -> None:
    """One-line errors for an index type a bank's backend lacks, or a metric none has: the check
    every backend (faiss here, memory/device.py, memory/milvus.py) makes of its settings."""
    if index_type not in index_types:
        if backend:
            raise ConfigError(
                f"memory_index must be one of {', '.join(index_types)} for the {backend} backend, got {index_type!r}"
            )
        raise ConfigError(f"memory index_type must be one of {', '.join(index_types)}, got {index_type!r}")
    if metric not in METRICS:
        raise ConfigError(f"memory metric must be one of {', '.join(METRICS)}, got {metric!r}")


def checked_pairs(keys: ArrayLike, values: ArrayLike, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(keys (n, dim) float32, values (n,) int64) to add, or a ValueError naming what is wrong."""
    keys = _as_matrix(keys, dim, "keys")
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    if len(values) != len(keys):
        raise ValueError(f"add() got {len(keys)} keys but {len(values)} values")
    if len(values) and values.min() < 0:
        raise ValueError("values must be item ids >= 0")
    return keys, values


def search_plan(
    size: int, k: int, exclude: ArrayLike | None, n_queries: int
) -> tuple[int, np.ndarray | None, np.ndarray]:
    """(k, exclusion ranges or None, widest range) for a search of a bank of ``size`` entries,
    or a ValueError naming what is wrong (the checks every bank backend shares)."""
    if size == 0:
        raise ValueError("the memory bank is empty: add() pairs before search()")
    try:
        k = operator.index(k)  # numpy integers too
    except TypeError:
        raise ValueError(f"k must be an integer, got {k!r}") from None
    ranges = exclusion_ranges(exclude)
    widths = np.zeros(n_queries, np.int64) if ranges is None else ranges[:, 1] - ranges[:, 0]
    extra = int(widths.max(initial=0))
    if not 0 < k <= size - extra:
        raise ValueError(
            f"k must be in [1, {size - extra}] for a bank of {size} entries "
            f"(excluding up to {extra} per query), got {k}"
        )
    return k, ranges, widths


def _joined(chunks: list[np.ndarray]) -> np.ndarray:
    """The one array of a list of added chunks (collapsed in place, so joined once)."""
    if len(chunks) > 1:
        chunks[:] = [np.concatenate(chunks)]
    return chunks[0]


def _optional_int(value: int | None) -> int | None:
    return None if value is None else int(value)


class MemoryBank:
    """faiss-backed memory of (key vector, item id) pairs.

    index_type: ``flat`` (exact inner product, default), ``ivf`` (IVF-Flat; trained on the first
    ``add``, of at least ``nlist`` keys), ``hnsw``, or ``auto`` (ivf or flat by the size of the
    first ``add``: ``index_for_size``; ``index_type`` names the choice from then on).
    metric: ``ip`` or ``cosine`` (keys and queries L2-normalised). ``nlist`` / ``nprobe`` None
    (the default): chosen from the size of the first ``add`` (``auto_nlist``, ``auto_nprobe``).
    """

    def __init__(
        self,
        dim: int,
        index_type: str = "flat",
        metric: str = "ip",
        nlist: int | None = None,
        nprobe: int | None = None,
        hnsw_m: int = 32,
        ef_search: int = 64,
    ) -> None:
        check_bank_settings(index_type, metric)
        self.dim, self.index_type, self.metric = int(dim), index_type, metric
        self.params = {
            "nlist": _optional_int(nlist),
            "nprobe": _optional_int(nprobe),
            "hnsw_m": int(hnsw_m),
            "ef_search": int(ef_search),
        }
        self.index = self._new_index()
        # added chunks, joined on first read: repeated add() stays linear, not quadratic; the
        # approximate indexes keep no keys here (see the module's docstring), only their norms
        self._keys = [np.zeros((0, self.dim), dtype=np.float32)]
        self._norms = [np.zeros(0, dtype=np.float32)]
        self._values = [np.zeros(0, dtype=np.int64)]

    @property
    def holds_keys(self) -> bool:
        """Whether the keys are kept beside the index (flat) or read back from it."""
        return self.index_type in ("flat", "auto")  # (auto: empty until its first add)

    @property
    def keys(self) -> np.ndarray:
        """(n, dim) key vectors, as added (for ivf / hnsw a copy read back from the index)."""
        if self.holds_keys:
            return _joined(self._keys)
        return self.entries(np.arange(len(self)))[0]

    @keys.setter
    def keys(self, keys: np.ndarray) -> None:
        self._keys = [keys]

    @property
    def values(self) -> np.ndarray:
        """(n,) item ids."""
        return _joined(self._values)

    @values.setter
    def values(self, values: np.ndarray) -> None:
        self._values = [values]

    def _new_index(self):
        ip = faiss.METRIC_INNER_PRODUCT
        if self.index_type in ("flat", "auto"):  # (auto: replaced on the first add)
            return faiss.IndexFlatIP(self.dim)
        if self.index_type == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.params["hnsw_m"], ip)
            index.hnsw.efSearch = self.params["ef_search"]
            return index
        nlist = self.params["nlist"] or 1  # auto: replaced on the first add (_plan_ivf)
        large = nlist >= HNSW_QUANTIZER_MIN_LISTS
        quantizer = faiss.IndexHNSWFlat(self.dim, 32, ip) if large else faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, ip)  # faiss's wrapper keeps the quantizer alive
        if large:
            index.cp.max_points_per_centroid = TRAIN_POINTS_PER_LIST
        index.set_direct_map_type(faiss.DirectMap.Array)  # entries() reads keys back by id
        self._set_nprobe(index)
        return index

    def _set_nprobe(self, index: faiss.Index) -> None:
        nprobe = self.params["nprobe"] or auto_nprobe(index.nlist)
        index.nprobe = nprobe
        quantizer = faiss.downcast_index(index.quantizer)
        if isinstance(quantizer, faiss.IndexHNSW):  # the graph search must see nprobe lists
            quantizer.hnsw.efSearch = max(2 * nprobe, 64)

    def _plan_ivf(self, n: int) -> None:
        """An untrained ivf bank's first add of ``n`` keys settles ``nlist`` / ``nprobe``."""
        if self.params["nlist"] is None:
            self.params["nlist"] = auto_nlist(n)
            self.index = self._new_index()
        if self.params["nprobe"] is None:
            self.params["nprobe"] = self.index.nprobe

    def _for_index(self, vectors: np.ndarray) -> np.ndarray:
        if self.metric == "cosine":
            vectors = vectors.copy()
            faiss.normalize_L2(vectors)
        return vectors

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Append pairs; returns the ids given to them. Works at any time, no retraining."""
        keys, values = checked_pairs(keys, values, self.dim)
        if self.index_type == "auto" and len(keys):
            self.index_type = index_for_size("auto", len(keys))
            self.index = self._new_index()
        if not self.index.is_trained:
            self._plan_ivf(len(keys))
            if len(keys) < self.params["nlist"]:
                raise ValueError(
                    f"an ivf bank is trained on its first add, which needs >= nlist="
                    f"{self.params['nlist']} keys (got {len(keys)}); lower memory_nlist or use flat/hnsw"
                )
            self.index.train(self._for_index(keys))
        first = len(self)
        self.index.add(self._for_index(keys))
        if self.holds_keys:
            self._keys.append(keys)
        elif self.metric == "cosine":
            self._norms.append(np.linalg.norm(keys, axis=1).astype(np.float32))
        self._values.append(values)
        return np.arange(first, len(self))

    def search(
        self, queries: np.ndarray, k: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Top-k entries per query -> (scores (q, k), keys (q, k, dim), values (q, k), ids (q, k)).

        exclude: entries never returned for a query, either (q,) ids or (q, 2) id ranges
        [start, stop) -- e.g. a training query's own <sequence, target> pair and its user's later
        prefixes. Slots an approximate index leaves empty have id -1, value 0 and a zero key.
        """
        k, ranges, widths = search_plan(len(self), k, exclude, len(queries))
        queries = self._for_index(_as_matrix(queries, self.dim, "queries"))
        if ranges is None:
            scores, ids = self.index.search(queries, k)
        else:
            scores, ids = np.empty((len(queries), k), np.float32), np.empty((len(queries), k), np.int64)
            # Queries with excluded ranges of alike size are searched together, each group only as
            # deep as its widest range needs (a user's many later prefixes need not deepen all).
            groups = np.ceil(np.log2(widths + 1)).astype(np.int64)
            for group in np.unique(groups):
                rows = np.flatnonzero(groups == group)
                found_scores, found = self.index.search(queries[rows], k + int(widths[rows].max()))
                excluded = (found >= ranges[rows, :1]) & (found < ranges[rows, 1:])
                first_kept = np.argsort(excluded, axis=1, kind="stable")[:, :k]
                scores[rows] = np.take_along_axis(found_scores, first_kept, 1)
                ids[rows] = np.take_along_axis(found, first_kept, 1)
        return (scores, *self.entries(ids), ids)

    def entries(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keys (..., dim) and values (...) of entry ids (any shape); id -1 gives a zero key and 0."""
        ids = np.asarray(ids)
        if not len(self):
            return np.zeros((*ids.shape, self.dim), np.float32), np.zeros(ids.shape, np.int64)
        flat_ids = ids.reshape(-1)
        found = np.maximum(flat_ids, 0)  # 1-d: indexing with it copies, never a view of the bank
        if self.holds_keys:
            keys = self.keys[found]
        else:
            keys = self.index.reconstruct_batch(found)
            if self.metric == "cosine":
                keys *= _joined(self._norms)[found][:, None]
        values = self.values[found]
        empty = flat_ids < 0
        if empty.any():  # (rare: an approximate search found fewer than k)
            keys[empty], values[empty] = 0.0, 0
        return keys.reshape(*ids.shape, self.dim), values.reshape(ids.shape)

    def save(self, path: str | os.PathLike) -> None:
        """One .npz file (serialized faiss index, values, settings; the flat bank's keys, the
        others' norms under cosine), written atomically."""
        meta = {
            "version": FORMAT_VERSION,
            "dim": self.dim,
            "index_type": self.index_type,
            "metric": self.metric,
            **self.params,
        }
        held = {"keys": self.keys} if self.holds_keys else {"norms": _joined(self._norms)}
        with atomic_path(path, ".npz") as tmp_path:
            np.savez(
                tmp_path,
                index=faiss.serialize_index(self.index),
                values=self.values,
                meta=np.array(json.dumps(meta)),
                **held,
            )

    @classmethod
    def load(cls, path: str | os.PathLike) -> MemoryBank:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no memory bank file at '{path}'")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                bank = cls(
                    meta["dim"],
                    meta["index_type"],
                    meta["metric"],
                    meta["nlist"],
                    meta["nprobe"],
                    meta["hnsw_m"],
                    meta["ef_search"],
                )
                bank.index = faiss.deserialize_index(data["index"])
                bank.values = data["values"]
                if bank.holds_keys:
                    bank.keys = data["keys"]
                elif meta["metric"] == "cosine":  # version 1 kept the keys, version 2 their norms
                    norms = data["norms"] if "norms" in data else np.linalg.norm(data["keys"], axis=1)
                    bank._norms = [norms.astype(np.float32)]
                if bank.index_type == "ivf":
                    bank.index.make_direct_map()  # version 1 files were written without one
        except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError, RuntimeError) as err:
            raise CheckpointError(
                f"'{path}' is not a memory bank saved by MemoryBank.save (truncated or "
                f"another file?): {type(err).__name__}: {err}. Point memory_path at a new "
                "file to rebuild the bank."
            ) from err
        if bank.index.ntotal != len(bank.values):
            raise CheckpointError(f"'{path}' is inconsistent: {bank.index.ntotal} vectors, {len(bank.values)} values")
        if (bank.holds_keys and not np.isfinite(bank.keys).all()) or (len(bank.values) and bank.values.min() < 0):
            raise CheckpointError(f"'{path}' holds NaN or infinite keys or negative item ids: rebuild the bank.")
        return bank

    def __repr__(self) -> str:
        return f"MemoryBank({len(self)} entries, dim={self.dim}, {self.index_type}, {self.metric})"
