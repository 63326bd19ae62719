"""MilvusMemoryBank: RaSeRec's memory bank in a Milvus collection, for banks past one machine.

The same verbs and semantics as MemoryBank (``add``, ``search`` with per-query exclusions,
``entries``, ``len``): entry ids are 0, 1, 2, ... in insertion order (the collection's primary
key), keys come back as added, values are item ids. One client, pymilvus's ``MilvusClient``, talks
to Milvus Lite when ``uri`` is a local file (``bank.db``: embedded, for tests and one machine) and
to a Milvus server or cluster when it is an address (``http://host:19530``, with ``token``).

A bank built for training is written to ``<collection>__building`` and renamed when complete
(``build``), so an interrupted build never leaves a collection a later run would take as whole.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np

from recbole_rag.errors import ConfigError
from recbole_rag.memory.bank import (
    _as_matrix,
    auto_nlist,
    auto_nprobe,
    check_bank_settings,
    checked_pairs,
    index_for_size,
    search_plan,
)

# Our index types -> Milvus's, and the build / search parameters each takes from ours.
INDEXES = {
    "flat": ("FLAT", lambda p: {}, lambda p: {}),
    "ivf": ("IVF_FLAT", lambda p: {"nlist": p["nlist"]}, lambda p: {"nprobe": p["nprobe"]}),
    "hnsw": ("HNSW", lambda p: {"M": p["hnsw_m"], "efConstruction": 200}, lambda p: {"ef": p["ef_search"]}),
}
MILVUS_METRICS = {"ip": "IP", "cosine": "COSINE"}
INSERT_ROWS = 10_000  # rows per insert request
SEARCH_ROWS = 1_024  # queries per search request
FIELDS = ["vector", "item"]
DEFAULT_NLIST = 1024  # ivf lists of a collection made before its size is known
MAX_LIMIT = 16_384  # Milvus's largest topk per search


@contextlib.contextmanager
def quiet_lite_server():
    """Milvus Lite's embedded server lacks one call pymilvus makes when it creates an index
    (AllocTimestamp) and logs the refusal as an ERROR; pymilvus carries on without it."""
    log = logging.getLogger("grpc._server")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def connect(uri, token="", timeout=10.0):
    """A MilvusClient for ``uri``; a one-line ConfigError when pymilvus is missing or nothing answers."""
    try:
        from pymilvus import MilvusClient, MilvusException
    except ImportError as err:
        raise ConfigError(f"memory_backend: milvus needs {err.name}: pip install 'recbole-rag[milvus]'.") from err
    try:
        return MilvusClient(uri=str(uri), token=token or "", timeout=timeout)
    except MilvusException as err:
        raise ConfigError(
            f"Milvus at '{uri}' does not answer ({getattr(err, 'message', err)}): start the server, or set "
            "memory_uri to a reachable address or to a local file for Milvus Lite."
        ) from err


class MilvusMemoryBank:
    """Memory of (key vector, item id) pairs in the Milvus collection ``collection`` at ``uri``.

    An existing collection is used as it is (its entries count) unless ``overwrite``; one of
    another dimension is refused. ``index_type="auto"``: ``build`` picks it from the bank's size
    (as MemoryBank does), an existing collection keeps its own, a new empty one is flat.
    """

    def __init__(
        self,
        dim: int,
        index_type: str = "flat",
        metric: str = "ip",
        uri: str = "memory.db",
        collection: str = "raserec_memory",
        nlist: int | None = None,
        nprobe: int | None = None,
        hnsw_m: int = 32,
        ef_search: int = 64,
        token: str = "",
        overwrite: bool = False,
    ) -> None:
        check_bank_settings(index_type, metric, ("auto", *INDEXES), "milvus")
        self.dim, self.index_type, self.metric = int(dim), index_type, metric
        self.uri, self.collection = str(uri), str(collection)
        nlist = DEFAULT_NLIST if nlist is None else int(nlist)  # build() sets it from the bank's size
        nprobe = auto_nprobe(nlist) if nprobe is None else int(nprobe)
        self.params = {"nlist": nlist, "nprobe": nprobe, "hnsw_m": int(hnsw_m), "ef_search": int(ef_search)}
        self.client = connect(uri, token)
        if overwrite and self.client.has_collection(self.collection):
            self.client.drop_collection(self.collection)
        if self.index_type == "auto":
            exists = self.client.has_collection(self.collection)
            self.index_type = (exists and self._stored_index_type()) or "flat"
        if self.client.has_collection(self.collection):
            self._check_stored()
            self.client.load_collection(self.collection)  # a stored collection is searched from memory
            self._size = self._count()
        else:
            self._create()
            self._size = 0

    def _create(self):
        from pymilvus import DataType

        schema = self.client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("item", DataType.INT64)
        index = self.client.prepare_index_params()
        name, build, _ = INDEXES[self.index_type]
        index.add_index(
            field_name="vector", index_type=name, metric_type=MILVUS_METRICS[self.metric], params=build(self.params)
        )
        with quiet_lite_server():
            # Strong: a search right after an insert or a delete sees it (a server's default does not)
            self.client.create_collection(
                self.collection, schema=schema, index_params=index, consistency_level="Strong"
            )

    def _stored_indexes(self) -> set[tuple[str, str]]:
        """(Milvus index type, metric) of the collection's vector indexes."""
        stored = [
            self.client.describe_index(self.collection, index_name=n) for n in self.client.list_indexes(self.collection)
        ]
        return {(i.get("index_type"), i.get("metric_type")) for i in stored if i.get("field_name") == "vector"}

    def _stored_index_type(self) -> str | None:
        """Our name of the collection's index type, None when it has none of ours."""
        names = {milvus: ours for ours, (milvus, _, _) in INDEXES.items()}
        found = sorted(names[index] for index, _ in self._stored_indexes() if index in names)
        return found[0] if found else None

    def _check_stored(self):
        """An existing collection must be of this bank's dimension, index type and metric."""
        where = f"Milvus collection '{self.collection}' at '{self.uri}'"
        remedy = "set memory_collection to another name (or drop that collection)."
        fields = self.client.describe_collection(self.collection)["fields"]
        dims = [f.get("params", {}).get("dim") for f in fields if f["name"] == "vector"]
        if not dims or int(dims[0]) != self.dim:
            held = dims[0] if dims else "?"
            raise ConfigError(f"{where} holds vectors of dim {held}, this bank needs {self.dim}: {remedy}")
        held = self._stored_indexes()
        wanted = (INDEXES[self.index_type][0], MILVUS_METRICS[self.metric])
        if held and wanted not in held:
            index, metric = sorted(held)[0]
            raise ConfigError(
                f"{where} has a {index} index on {metric}, this bank needs {wanted[0]} on {wanted[1]} "
                f"(memory_index {self.index_type}, memory_metric {self.metric}): {remedy}"
            )

    def _count(self):
        return int(self.client.query(self.collection, filter="", output_fields=["count(*)"])[0]["count(*)"])

    def __len__(self):
        return self._size

    def add(self, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Append pairs; returns the ids given to them. Works at any time, no retraining."""
        keys, values = checked_pairs(keys, values, self.dim)
        ids = np.arange(self._size, self._size + len(keys))
        for start in range(0, len(keys), INSERT_ROWS):
            part = slice(start, start + INSERT_ROWS)
            rows = [{"id": int(i), "vector": k, "item": int(v)} for i, k, v in zip(ids[part], keys[part], values[part])]
            self.client.insert(self.collection, rows)
            self._size += len(rows)
        return ids

    def _search(self, queries, limit):
        """(scores, ids, keys, values) of the top ``limit`` entries per query, best first."""
        if limit > MAX_LIMIT:
            raise ConfigError(
                f"A Milvus search returns at most {MAX_LIMIT:,} entries per query; this one needs {limit:,} "
                "(retrieval_k plus the entries a training query leaves out, its own user's): lower retrieval_k, "
                "or use memory_backend: faiss."
            )
        _, _, search = INDEXES[self.index_type]
        scores = np.zeros((len(queries), limit), np.float32)
        ids = np.full((len(queries), limit), -1, np.int64)
        keys = np.zeros((len(queries), limit, self.dim), np.float32)
        values = np.zeros((len(queries), limit), np.int64)
        params = {"metric_type": MILVUS_METRICS[self.metric], "params": search(self.params)}
        for start in range(0, len(queries), SEARCH_ROWS):
            found = self.client.search(
                self.collection,
                data=queries[start : start + SEARCH_ROWS],
                limit=limit,
                output_fields=FIELDS,
                search_params=params,
            )
            for row, hits in enumerate(found, start):
                for j, hit in enumerate(hits):
                    scores[row, j], ids[row, j] = hit["distance"], hit["id"]
                    keys[row, j], values[row, j] = hit["entity"]["vector"], hit["entity"]["item"]
        return scores, ids, keys, values

    def search(
        self, queries: np.ndarray, k: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """As ``MemoryBank.search``: (scores (q, k), keys (q, k, dim), values (q, k), ids (q, k))."""
        k, ranges, widths = search_plan(len(self), k, exclude, len(queries))
        queries = _as_matrix(queries, self.dim, "queries")
        scores, ids, keys, values = self._search(queries, k + int(widths.max(initial=0)))
        if ranges is not None:  # drop each query's excluded entries, keep the first k of the rest
            excluded = (ids >= ranges[:, :1]) & (ids < ranges[:, 1:])
            keep = np.argsort(excluded, axis=1, kind="stable")[:, :k]
            scores, ids, values = (np.take_along_axis(a, keep, 1) for a in (scores, ids, values))
            keys = np.take_along_axis(keys, keep[..., None], 1)
        return scores[:, :k], keys[:, :k], values[:, :k], ids[:, :k]

    def entries(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keys (..., dim) and values (...) of entry ids (any shape); id -1 gives a zero key and 0."""
        ids = np.asarray(ids)
        keys = np.zeros(ids.shape + (self.dim,), np.float32)
        values = np.zeros(ids.shape, np.int64)
        wanted = np.unique(ids[ids >= 0])
        if len(wanted):
            rows = self.client.get(self.collection, ids=wanted.tolist(), output_fields=FIELDS)
            found = {int(r["id"]): r for r in rows}
            for index in zip(*np.nonzero(ids >= 0)):
                row = found[int(ids[index])]
                keys[index], values[index] = row["vector"], row["item"]
        return keys, values

    def truncate(self, size: int) -> None:
        """Drop every entry with id >= ``size`` (e.g. the validation pairs a test added)."""
        if size < self._size:
            self.client.delete(self.collection, filter=f"id >= {int(size)}")
            self._size = int(size)

    @classmethod
    def build(cls, keys, values, collection, **settings) -> MilvusMemoryBank:
        """A new bank of these pairs under ``collection``, written under a temporary name and
        renamed when whole (an existing collection of that name is replaced only then)."""
        settings["index_type"] = index_for_size(settings.get("index_type", "flat"), len(keys))
        if settings.get("nlist") is None:
            settings["nlist"] = auto_nlist(len(keys))
        building = cls(collection=f"{collection}__building", overwrite=True, **settings)
        building.add(keys, values)
        if building.client.has_collection(collection):
            building.client.drop_collection(collection)
        building.client.rename_collection(building.collection, collection)
        building.collection = collection
        building.client.load_collection(collection)
        return building

    def __repr__(self):
        return f"MilvusMemoryBank({len(self)} entries, dim={self.dim}, {self.index_type}, {self.metric}, {self.uri})"
