"""RaSeRec (Zhao et al., arXiv 2412.18378): retrieval-augmented sequential recommendation.

Stage 1 (``stage = "pretrain"``) is DuoRec: collaborative pre-training of the SASRec encoder.
Stage 2 (``stage = "raft"``) retrieves, for each user vector h, the top-K <sequence vector, next
item> memories and fuses h~ = alpha * h + (1 - alpha) * h', h' from retrieval-augmented attention;
trained with cross-entropy over all items. RaSeRecTrainer runs both stages and builds the bank.
"""

from __future__ import annotations

import functools
import os
import re
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from recbole_rag.errors import ConfigError
from recbole_rag.memory import MemoryBank
from recbole_rag.memory.bank import check_bank_settings
from recbole_rag.memory.device import DeviceMemoryBank
from recbole_rag.memory.milvus import INDEXES as MILVUS_INDEXES
from recbole_rag.memory.milvus import MilvusMemoryBank, connect
from recbole_rag.model.retrieval import RetrievalAugmentedAttention
from recbole_rag.model.sequential_recommender.duorec import DuoRec

if TYPE_CHECKING:
    from recbole.config import Config
    from recbole.data.dataset import Dataset
    from recbole.data.interaction import Interaction

Bank = MemoryBank | DeviceMemoryBank | MilvusMemoryBank  # the backends share their verbs

# Fields the trainer adds to the training rows: the row's own entry id in the memory bank and
# the end of its user's block, so [memory_id, memory_stop) is the row's own pair and the user's
# later prefixes (which contain the row's target): never retrieved for that row.
MEMORY_ID, MEMORY_STOP = "memory_id", "memory_stop"
# auto: torch on a CUDA model with a flat index, else faiss; faiss: one machine's faiss index; torch:
# tensors on the model's device, exact search by matmul + top-k (memory/device.py); milvus: a
# Milvus collection (memory/milvus.py)
MEMORY_BACKENDS = ("auto", "faiss", "torch", "milvus")


@functools.cache
def _warn_host_search(index: str) -> None:
    """Once per process: an approximate index on a CUDA model is searched by faiss on the CPU."""
    warnings.warn(
        f"memory_index {index} on a CUDA model is searched by faiss on the CPU: every search copies its "
        "queries to the host and back. memory_index: flat searches exactly on the device, faster at the "
        "sizes of the benchmark datasets.",
        stacklevel=3,
    )


class RaSeRec(DuoRec):
    def __init__(self, config: Config, dataset: Dataset) -> None:
        super().__init__(config, dataset)  # settings' ranges: recbole_rag.settings_check, checked by Config
        self.config = config
        self.memory_collection = None  # the milvus backend's collection for this run (milvus_settings)
        self.check_memory_settings()
        self.alpha, self.retrieval_k = config["alpha"], config["retrieval_k"]
        self.freeze_backbone = config["freeze_backbone"]
        self.retrieval = RetrievalAugmentedAttention(
            config["hidden_size"],
            config["n_heads"],
            config["inner_size"],
            config["raft_dropout"],
            config["attn_tau"],
            config["layer_norm_eps"],
        )
        self.memory = None
        self.train_neighbours = None  # (n_train, K) bank ids per training entry, see cache_training_neighbours
        self.stage = "pretrain"
        self.memory_file = None  # the saved training bank (RaSeRecTrainer.build_memory)
        # saved in checkpoints: a run resumes its stage; a loaded RAFT model finds its bank
        self.other_parameter_name = ["stage", "memory_file", "memory_collection"]

    # --- memory -------------------------------------------------------------------------------
    def memory_settings(self) -> dict[str, Any]:
        c = self.config
        return {
            "dim": c["hidden_size"],
            "index_type": c["memory_index"],
            "metric": c["memory_metric"],
            "nlist": c["memory_nlist"],
            "nprobe": c["memory_nprobe"],
            "hnsw_m": c["memory_hnsw_m"],
            "ef_search": c["memory_ef_search"],
        }

    def milvus_settings(self) -> dict[str, Any]:
        """Where the milvus backend keeps the bank: ``memory_uri`` (default: a Milvus Lite file in
        the checkpoint folder) and ``memory_collection`` (default: one of this run's own,
        raserec_<dataset>_<time>_<pid>, which its checkpoints name so a test reopens that one)."""
        c = self.config
        uri = c["memory_uri"] or os.path.join(c["checkpoint_dir"], "raserec-memory.db")
        if "://" not in uri:
            os.makedirs(os.path.dirname(os.path.abspath(uri)), exist_ok=True)
        if self.memory_collection is None:
            dataset = re.sub(r"\W", "_", str(c["dataset"]))
            self.memory_collection = c["memory_collection"] or f"raserec_{dataset}_{time.time_ns()}_{os.getpid()}"
        return {
            **self.memory_settings(),
            "uri": uri,
            "collection": self.memory_collection,
            "token": c["memory_token"] or "",
        }

    def memory_backend(self) -> str:
        """The backend ``memory_backend`` resolves to (``auto``: torch on CUDA with a flat index)."""
        backend = self.config["memory_backend"]
        if backend == "auto":
            on_cuda = torch.device(self.config["device"] or "cpu").type == "cuda"
            if on_cuda and self.config["memory_index"] != "flat":
                _warn_host_search(self.config["memory_index"])
            return "torch" if on_cuda and self.config["memory_index"] == "flat" else "faiss"
        return backend

    def new_memory(self) -> Bank:
        """An empty bank of the configured backend (a fresh collection for Milvus)."""
        backend = self.memory_backend()
        if backend == "milvus":
            return MilvusMemoryBank(**self.milvus_settings(), overwrite=True)
        if backend == "torch":
            return DeviceMemoryBank(self.config["hidden_size"], self.config["memory_metric"], self.device)
        return MemoryBank(**self.memory_settings())

    def on_backend(self, bank: Bank) -> Bank:
        """A faiss bank (e.g. loaded from its file) on the configured backend."""
        if self.memory_backend() == "torch" and isinstance(bank, MemoryBank):
            return DeviceMemoryBank.from_faiss(bank, self.device)
        return bank

    def check_memory_settings(self) -> None:
        """Bad memory settings fail at model construction, not after stage 1: the faiss bank
        checks its own; the milvus backend's index and metric are checked and its server asked."""
        backend = self.config["memory_backend"]
        if backend not in MEMORY_BACKENDS:
            raise ConfigError(f"memory_backend must be one of {', '.join(MEMORY_BACKENDS)}, got {backend!r}.")
        if backend in ("auto", "faiss"):
            MemoryBank(**self.memory_settings())
            return
        if backend == "torch":
            if self.config["memory_index"] != "flat":
                index = self.config["memory_index"]
                raise ConfigError(f"memory_backend: torch searches exactly: memory_index must be flat, got {index!r}.")
            check_bank_settings("flat", self.config["memory_metric"])
            return
        settings = self.milvus_settings()
        check_bank_settings(settings["index_type"], settings["metric"], MILVUS_INDEXES, "milvus")
        connect(settings["uri"], settings["token"]).close()

    @torch.no_grad()
    def encode(self, inter_feat: Interaction, batch_size: int = 2048, show_progress: bool = False) -> np.ndarray:
        """User vectors (n, hidden) of every row of an Interaction, dropout off."""
        was_training = self.training
        self.eval()
        chunks = []
        starts = range(0, len(inter_feat), batch_size)
        for start in tqdm(starts, desc="Encode", ncols=100, disable=not show_progress):
            rows = inter_feat[start : start + batch_size].to(self.device)
            chunks.append(self.forward(rows[self.ITEM_SEQ], rows[self.ITEM_SEQ_LEN]).float().cpu().numpy())
        self.train(was_training)
        return (
            np.concatenate(chunks) if chunks else np.zeros((0, self.encoder.item_embedding.embedding_dim), np.float32)
        )

    def add_to_memory(self, inter_feat: Interaction, batch_size: int = 2048, show_progress: bool = False) -> np.ndarray:
        """Encode <sequence, next item> rows and add them to the bank (no gradient step)."""
        keys = self.encode(inter_feat, batch_size, show_progress)
        values = inter_feat[self.POS_ITEM_ID].numpy()
        if self.memory is None and self.config["memory_backend"] == "milvus":  # written whole, then named
            settings = self.milvus_settings()
            self.memory = MilvusMemoryBank.build(keys, values, settings.pop("collection"), **settings)
            return np.arange(len(values))
        if self.memory is None:
            self.memory = self.new_memory()
        return self.memory.add(keys, values)

    # --- stage 2 ------------------------------------------------------------------------------
    def start_raft(self) -> None:
        """Switch to stage 2: the backbone frozen (as config says), the retrieval module trained."""
        if self.memory is None or len(self.memory) == 0:
            raise ValueError("RAFT needs a non-empty memory bank: build it with add_to_memory() first.")
        if self.retrieval_k > len(self.memory) - 1:
            raise ConfigError(
                f"retrieval_k={self.retrieval_k} is larger than the memory bank "
                f"({len(self.memory)} entries, one is each query's own): lower retrieval_k."
            )
        self.stage = "raft"
        for p in self.encoder.parameters():
            p.requires_grad_(not self.freeze_backbone)
        self.train(self.training)

    def cache_training_neighbours(
        self, entry_stop: np.ndarray, chunk_size: int = 1024, show_progress: bool = False
    ) -> None:
        """Retrieve the top-K memories of every training entry once.

        With the backbone frozen, a training query is its own memory key and the bank does not
        change while training, so its neighbours are fixed: one pass here replaces a search per
        batch. Entries are searched in bank order (by user), so each chunk excludes only a few
        users' ranges [entry, entry_stop).
        """
        n = len(entry_stop)
        parts = []
        for start in tqdm(range(0, n, chunk_size), desc="Retrieve", ncols=100, disable=not show_progress):
            end = min(start + chunk_size, n)
            exclude = np.stack([np.arange(start, end), entry_stop[start:end]], 1)
            own_keys = self.memory.entries(np.arange(start, end))[0]
            parts.append(self.memory.search(own_keys, self.retrieval_k, exclude)[3])
        empty = np.zeros((0, self.retrieval_k), np.int64)
        # a device bank's neighbours stay on the device: a RAFT step reads them without a copy
        self.train_neighbours = (
            torch.cat(parts) if parts and torch.is_tensor(parts[0]) else np.concatenate(parts or [empty])
        )

    def train(self, mode: bool = True) -> RaSeRec:
        super().train(mode)
        if self.stage == "raft" and self.freeze_backbone:
            self.encoder.eval()  # a frozen backbone encodes as it did for the memory bank
        return self

    def augment(
        self,
        h: torch.Tensor,
        exclude: np.ndarray | torch.Tensor | None = None,
        neighbours: np.ndarray | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """h (B, H) -> h~ = alpha * h + (1 - alpha) * RAM(h, retrieved keys, their next items).

        neighbours: bank ids already retrieved for these rows (B, K); else searched here."""
        if self.memory is None or len(self.memory) == 0:
            raise ValueError("The memory bank is empty: build it (RaSeRecTrainer does) before retrieval.")
        on_device = isinstance(self.memory, DeviceMemoryBank)
        if neighbours is None:
            queries = h.detach().float() if on_device else h.detach().float().cpu().numpy()
            _, keys, values, neighbours = self.memory.search(queries, self.retrieval_k, exclude)
        else:
            keys, values = self.memory.entries(neighbours)
        keys, values, found = (torch.as_tensor(a).to(h.device) for a in (keys, values, neighbours >= 0))
        h_retrieved = self.retrieval(h, keys.to(h.dtype), self.item_embedding(values), found)
        return self.alpha * h + (1.0 - self.alpha) * h_retrieved

    def final_vector(self, interaction: Interaction) -> torch.Tensor:
        if self.stage != "raft":
            return self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        if MEMORY_ID not in interaction:  # evaluation: search the bank as it is now
            return self.augment(self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]))
        on_device = isinstance(self.memory, DeviceMemoryBank)  # ids stay on the device: no host wait
        entries = interaction[MEMORY_ID] if on_device else interaction[MEMORY_ID].cpu().numpy()
        if self.freeze_backbone and self.train_neighbours is not None:
            # A training row's frozen-backbone vector is its own memory key: no encoder pass.
            h = torch.as_tensor(self.memory.entries(entries)[0]).to(self.device)
            return self.augment(h, neighbours=self.train_neighbours[entries])
        h = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        stop = interaction[MEMORY_STOP] if on_device else interaction[MEMORY_STOP].cpu().numpy()
        exclude = torch.stack([entries, stop], 1) if on_device else np.stack([entries, stop], 1)
        return self.augment(h, exclude)

    def calculate_loss(self, interaction: Interaction) -> torch.Tensor:
        if self.stage != "raft":
            return super().calculate_loss(interaction)
        logits = self.final_vector(interaction) @ self.item_embedding.weight.T
        return F.cross_entropy(logits, interaction[self.POS_ITEM_ID])

    def predict(self, interaction: Interaction) -> torch.Tensor:
        return (self.final_vector(interaction) * self.item_embedding(interaction[self.ITEM_ID])).sum(-1)

    def full_sort_predict(self, interaction: Interaction) -> torch.Tensor:
        return self.final_vector(interaction) @ self.item_embedding.weight.T
