"""RaSeRec (Zhao et al., arXiv 2412.18378): retrieval-augmented sequential recommendation.

Stage 1 (``stage = "pretrain"``) is DuoRec: collaborative pre-training of the SASRec encoder.
Stage 2 (``stage = "raft"``) retrieves, for each user vector h, the top-K <sequence vector, next
item> memories and fuses h~ = alpha * h + (1 - alpha) * h', h' from retrieval-augmented attention;
trained with cross-entropy over all items. RaSeRecTrainer runs both stages and builds the bank.

``RetrievalAugmentation`` is stage 2 on its own; ``on_backbone`` puts it on any RecBole sequential
model whose scores are its user vector . item table (``backbone: GRU4Rec``, ...): stage 1 is then
that model trained with its own loss.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from recbole_rag.errors import CheckpointError, ConfigError
from recbole_rag.memory import MemoryBank
from recbole_rag.memory.bank import check_bank_settings
from recbole_rag.memory.device import DeviceMemoryBank
from recbole_rag.memory.milvus import INDEXES as MILVUS_INDEXES
from recbole_rag.memory.milvus import MilvusMemoryBank, connect
from recbole_rag.model.backbone import load_backbone
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
# auto: torch on a CUDA model with a flat or auto index, else faiss; faiss: one machine's faiss index; torch:
# tensors on the model's device, exact search by matmul + top-k (memory/device.py); milvus: a
# Milvus collection (memory/milvus.py)
MEMORY_BACKENDS = ("auto", "faiss", "torch", "milvus")
EXACT_ON_DEVICE = ("flat", "auto")  # memory_index values the torch backend serves (exactly)


@functools.cache
def _warn_host_search(index: str) -> None:
    """Once per process: an approximate index on a CUDA model is searched by faiss on the CPU."""
    warnings.warn(
        f"memory_index {index} on a CUDA model is searched by faiss on the CPU: every search copies its "
        "queries to the host and back. memory_index: auto (or flat) searches exactly on the device, faster "
        "at the sizes of the benchmark datasets.",
        stacklevel=3,
    )


class RetrievalAugmentation:
    """Stage 2 on a sequential model that gives ``forward(item_seq, item_seq_len) -> (B, d)`` user
    vectors, an ``item_embedding`` table and its own ``calculate_loss`` for stage 1; mixed in
    before that model's class, whose ``__init__`` runs first, then ``init_retrieval``."""

    def init_retrieval(self, config: Config, n_heads: int, inner_size: int, layer_norm_eps: float) -> None:
        """The retrieval module (sized by the item table) and the bank's state."""
        self.config = config  # settings' ranges: recbole_rag.settings_check, checked by Config
        self.memory_collection = None  # the milvus backend's collection for this run (milvus_settings)
        self.check_memory_settings()
        self.alpha, self.retrieval_k = config["alpha"], config["retrieval_k"]
        self.freeze_backbone = config["freeze_backbone"]
        self.retrieval = RetrievalAugmentedAttention(
            self.memory_dim, n_heads, inner_size, config["raft_dropout"], config["attn_tau"], layer_norm_eps
        )
        self.memory = None
        self.train_neighbours = None  # (n_train, K) bank ids per training entry, see cache_training_neighbours
        self.stage = "pretrain"
        self.memory_file = None  # the saved training bank (RaSeRecTrainer.build_memory)
        # saved in checkpoints: a run resumes its stage; a loaded RAFT model finds its bank
        own = list(getattr(self, "other_parameter_name", None) or [])  # the backbone's (FDSA's, ...)
        self.other_parameter_name = [*own, "stage", "memory_file", "memory_collection"]

    @property
    def memory_dim(self) -> int:
        """Size of a user vector, a bank key: the item table's."""
        return self.item_embedding.embedding_dim

    def backbone_modules(self) -> list[nn.Module]:
        """What stage 1 trained (in eval mode in stage 2 with ``freeze_backbone``): all but the retrieval module."""
        return [module for name, module in self.named_children() if name != "retrieval"]

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Stage 1's weights (frozen in stage 2 with ``freeze_backbone``), a model's own ones too."""
        return [p for name, p in self.named_parameters() if not name.startswith("retrieval.")]

    def check_scoring(self, interaction: Interaction) -> None:
        """Refuse a backbone whose full ranking is not its user vector . item table (on_backbone's)."""

    # --- memory -------------------------------------------------------------------------------
    def memory_settings(self) -> dict[str, Any]:
        c = self.config
        return {
            "dim": self.memory_dim,
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
        """The backend ``memory_backend`` resolves to (``auto``: torch on CUDA, where ``memory_index``
        is flat or auto: exact search on the device beats faiss's approximate one on the host)."""
        backend = self.config["memory_backend"]
        if backend == "auto":
            on_cuda = torch.device(self.config["device"] or "cpu").type == "cuda"
            exact = self.config["memory_index"] in EXACT_ON_DEVICE
            if on_cuda and not exact:
                _warn_host_search(self.config["memory_index"])
            return "torch" if on_cuda and exact else "faiss"
        return backend

    def new_memory(self) -> Bank:
        """An empty bank of the configured backend (a fresh collection for Milvus)."""
        backend = self.memory_backend()
        if backend == "milvus":
            return MilvusMemoryBank(**self.milvus_settings(), overwrite=True)
        if backend == "torch":
            return DeviceMemoryBank(self.memory_dim, self.config["memory_metric"], self.device)
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
            if self.config["memory_index"] not in EXACT_ON_DEVICE:
                index = self.config["memory_index"]
                raise ConfigError(
                    f"memory_backend: torch searches exactly: memory_index must be flat or auto, got {index!r}."
                )
            check_bank_settings("flat", self.config["memory_metric"])
            return
        settings = self.milvus_settings()
        check_bank_settings(settings["index_type"], settings["metric"], ("auto", *MILVUS_INDEXES), "milvus")
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
        return np.concatenate(chunks) if chunks else np.zeros((0, self.memory_dim), np.float32)

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
        for parameter in self.backbone_parameters():
            parameter.requires_grad_(not self.freeze_backbone)
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

    def train(self, mode: bool = True) -> RetrievalAugmentation:
        super().train(mode)
        if getattr(self, "stage", None) == "raft" and self.freeze_backbone:  # (unset while the backbone builds)
            for module in self.backbone_modules():
                module.eval()  # a frozen backbone encodes as it did for the memory bank
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


class RaSeRec(RetrievalAugmentation, DuoRec):
    """RaSeRec as published: stage 1 is DuoRec (our SASRec encoder), whose checkpoints, RaSeRec's
    own and RecBole SASRec's start stage 2 (``pretrained_path``)."""

    backbone_name = "DuoRec"

    def __init__(self, config: Config, dataset: Dataset) -> None:
        super().__init__(config, dataset)
        self.init_retrieval(config, config["n_heads"], config["inner_size"], config["layer_norm_eps"])

    def backbone_modules(self) -> list[nn.Module]:
        return [self.encoder]

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def load_backbone_checkpoint(self, checkpoint: dict[str, Any], path: str) -> None:
        load_backbone(self.encoder, checkpoint, path)


def _user_vector_model(backbone_class: type) -> None:
    """A one-line refusal unless ``backbone_class`` encodes (item_seq, item_seq_len)."""
    parameters = list(inspect.signature(backbone_class.forward).parameters)[1:]
    if parameters != ["item_seq", "item_seq_len"]:
        raise ConfigError(
            f"RaSeRec's RAFT wraps a model whose forward(item_seq, item_seq_len) gives user vectors; "
            f"{backbone_class.__name__}.forward takes ({', '.join(parameters)})."
        )


@functools.cache
def on_backbone(backbone_class: type) -> type:
    """RaSeRec whose stage 1 is ``backbone_class`` (a RecBole sequential model) trained with its
    own loss and settings; stage 2 as RaSeRec's, the retrieval attention sized by its item table
    (heads ``n_heads`` and feed-forward ``inner_size`` where the backbone has them, else 2 and
    4 x its size). ``check_scoring`` refuses a model whose scores are not user vector . item table."""
    _user_vector_model(backbone_class)

    class RaSeRecOn(RetrievalAugmentation, backbone_class):
        def __init__(self, config: Config, dataset: Dataset) -> None:
            backbone_class.__init__(self, config, dataset)
            table = getattr(self, "item_embedding", None)
            if not isinstance(table, nn.Embedding):
                name = backbone_class.__name__
                raise ConfigError(f"RaSeRec's RAFT scores with the backbone's item_embedding table; {name} has none.")
            dim = table.embedding_dim
            self.init_retrieval(
                config, config["n_heads"] or 2, config["inner_size"] or 4 * dim, config["layer_norm_eps"] or 1e-12
            )

        def load_backbone_checkpoint(self, checkpoint: dict[str, Any], path: str) -> None:
            """The backbone's weights from its own RecBole checkpoint (this model's but the retrieval module)."""
            saved = checkpoint.get("config", {}).get("model")
            if saved != backbone_class.__name__:
                raise CheckpointError(
                    f"'{path}' holds a {saved} model; this RaSeRec's backbone is {backbone_class.__name__}."
                )
            own = {k: v for k, v in self.state_dict().items() if not k.startswith("retrieval.")}
            state = checkpoint["state_dict"]
            wrong = [k for k in own if k not in state or state[k].shape != own[k].shape]
            if wrong or set(state) - set(own):
                raise CheckpointError(
                    f"'{path}' does not fit this {backbone_class.__name__} (other settings or dataset): "
                    + ", ".join((wrong or sorted(set(state) - set(own)))[:5])
                )
            self.load_state_dict(state, strict=False)

        def check_scoring(self, interaction: Interaction) -> None:
            """A one-line refusal unless the backbone's own full ranking is forward . item table."""
            was_training = self.training
            self.eval()
            with torch.no_grad():
                own = backbone_class.full_sort_predict(self, interaction)
                user = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
                dot = user @ self.item_embedding.weight.T
            self.train(was_training)
            if own.shape != dot.shape or not torch.allclose(own, dot, atol=1e-4, rtol=1e-4):
                gap = (own - dot).abs().max().item() if own.shape == dot.shape else float("nan")
                raise ConfigError(
                    f"RaSeRec's RAFT adds to a user vector scored against the item table; "
                    f"{backbone_class.__name__} scores otherwise (its full ranking differs by up to {gap:.3g})."
                )

    RaSeRecOn.__name__ = RaSeRecOn.__qualname__ = "RaSeRec"
    RaSeRecOn.__doc__ = f"RaSeRec's RAFT on a {backbone_class.__name__} backbone (on_backbone)."
    RaSeRecOn.backbone_name = backbone_class.__name__
    return RaSeRecOn
