"""RaSeRecTrainer: stage 1 (collaborative pre-training) -> memory bank -> stage 2 (RAFT) ->
evaluation with the bank extended by the validation interactions (``memory_update``).

Each stage's output is a file a later run can start from: ``pretrained_path`` skips stage 1,
``memory_path`` reuses a saved bank, ``resume_path`` continues an interrupted stage 1 or stage 2
from its checkpoint (epoch, weights and optimizer), then runs the stages after it.
"""

import os
import time

import numpy as np
import torch
from recbole.data.interaction import Interaction
from recbole.utils import get_local_time, set_color

from recbole_rag.checkpoint import check_fits, check_same_items
from recbole_rag.errors import CheckpointError, ConfigError, RecBoleRagError
from recbole_rag.files import claim_path
from recbole_rag.memory import MemoryBank
from recbole_rag.memory.bank import index_for_size
from recbole_rag.memory.builders import build_pattern_memory, check_memory_source
from recbole_rag.memory.milvus import MilvusMemoryBank, connect
from recbole_rag.model.sequential_recommender.raserec import MEMORY_ID, MEMORY_STOP
from recbole_rag.trainer import Trainer, load_checkpoint


def memory_layout(user_ids, times, lengths):
    """Bank order for training rows (any order): by user, then time, then prefix length.

    Returns (order, memory_id, memory_stop): bank entry j holds row order[j]; row i's entry is
    memory_id[i], and [memory_id[i], memory_stop[i]) is that entry and its user's later prefixes.
    Rows that repeat one pair (same user, time and length: a regenerated set holds the original
    rows twice) share the first copy's entry, so no copy retrieves its twin's target.
    """
    user_ids, times, lengths = np.asarray(user_ids), np.asarray(times), np.asarray(lengths)
    order = np.lexsort((lengths, times, user_ids))
    sorted_users = user_ids[order]
    memory_id = np.empty(len(order), dtype=np.int64)
    memory_stop = np.empty(len(order), dtype=np.int64)
    new_pair = np.ones(len(order), dtype=bool)
    new_pair[1:] = (np.diff(sorted_users) != 0) | (np.diff(times[order]) != 0) | (np.diff(lengths[order]) != 0)
    memory_id[order] = np.maximum.accumulate(np.where(new_pair, np.arange(len(order)), 0))
    memory_stop[order] = np.searchsorted(sorted_users, sorted_users, side="right")
    return order, memory_id, memory_stop


def pair_layout(feat, config):
    """memory_layout of a training Interaction's rows."""
    return memory_layout(
        feat[config["USER_ID_FIELD"]].numpy(),
        feat[config["TIME_FIELD"]].numpy(),
        feat[config["ITEM_LIST_LENGTH_FIELD"]].numpy(),
    )


BANK_CHECKS = 512  # keys of a loaded bank compared with the backbone's, spread over the bank


def load_pair_memory(model, feat, order, path, config, same_backbone=True):
    """The bank saved at ``path``, checked to hold these training pairs and (``same_backbone``:
    the model's weights are those that built it) this backbone's vectors of them."""
    bank = MemoryBank.load(path)
    if len(bank) != len(feat) or bank.dim != model.memory_dim:
        raise CheckpointError(
            f"memory bank '{path}' has {len(bank)} entries of dim {bank.dim}, but this training "
            f"set has {len(feat)} pairs of dim {model.memory_dim}: point memory_path "
            "at a new file to rebuild it."
        )
    wanted = index_for_size(config["memory_index"], len(feat))
    # auto on a CUDA model searches exactly on the device and saves a flat bank
    fits = {wanted, "flat"} if config["memory_index"] == "auto" else {wanted}
    if bank.index_type not in fits or bank.metric != config["memory_metric"]:
        asked = config["memory_index"] + (f" ({wanted} at this size)" if wanted != config["memory_index"] else "")
        raise CheckpointError(
            f"memory bank '{path}' is a {bank.index_type} bank on {bank.metric}, this run asks for memory_index "
            f"{asked} on memory_metric {config['memory_metric']}: set those to the bank's, or "
            "point memory_path at a new file to build one."
        )
    # every value, and keys spread over the whole bank (encoding every pair again would cost what
    # rebuilding the bank costs)
    positions = np.unique(np.linspace(0, len(order) - 1, min(len(order), BANK_CHECKS)).astype(int))
    keys = bank.entries(positions)[0]
    same_values = np.array_equal(bank.values, feat[config["ITEM_ID_FIELD"]][order].numpy())
    if not np.isfinite(keys).all() or (bank.holds_keys and not np.isfinite(bank.keys).all()):
        raise CheckpointError(f"memory bank '{path}' holds NaN or infinite keys: point memory_path at a new file.")
    same_keys = not same_backbone or np.allclose(keys, model.encode(feat[order[positions]]), atol=1e-4)
    if not same_keys or not same_values:
        raise CheckpointError(
            f"memory bank '{path}' was built from another backbone or training set (or changed since): point "
            "memory_path at a new file to rebuild it."
        )
    return bank


def stored_milvus_bank(model, feat, config):
    """The run's Milvus collection cut back to its training pairs, or None when it holds fewer
    (gone); with a frozen backbone its first keys are checked to be this model's vectors."""
    bank = MilvusMemoryBank(**model.milvus_settings())
    if len(bank) < len(feat):
        return None
    bank.truncate(len(feat))
    if config["freeze_backbone"]:
        sample = pair_layout(feat, config)[0][:256]
        if not np.allclose(bank.entries(np.arange(len(sample)))[0], model.encode(feat[sample]), atol=1e-4):
            raise CheckpointError(
                f"Milvus collection '{bank.collection}' was built from another backbone or training set."
            )
    return bank


def restore_test_memory(model, config, train_dataset, valid_dataset):
    """Give a model loaded from a RAFT checkpoint the bank its test used: the training bank (the
    file the checkpoint names, else rebuilt as RaSeRecTrainer builds it) plus, with
    ``memory_update``, the validation pairs."""
    if model.stage != "raft":
        return
    feat = train_dataset.inter_feat
    frozen = config["freeze_backbone"]  # else RAFT moved the weights that built the bank
    if config["memory_source"] == "patterns" and not frozen:
        raise CheckpointError(
            "This RAFT checkpoint fine-tuned its backbone after building a pattern bank, which is not "
            "saved: its test-time bank cannot be rebuilt from the checkpoint."
        )
    if config["memory_source"] == "patterns":
        model.memory, _ = build_pattern_memory(model, train_dataset, config)
    elif model.memory_backend() == "milvus" and (bank := stored_milvus_bank(model, feat, config)):
        model.memory = bank  # the training pairs the collection holds; pairs a test added are dropped
    elif model.memory_file and os.path.isfile(model.memory_file):
        order = pair_layout(feat, config)[0]
        bank = load_pair_memory(model, feat, order, model.memory_file, config, same_backbone=frozen)
        model.memory = model.on_backend(bank)
    elif not frozen:
        raise CheckpointError(
            f"memory bank '{model.memory_file}' is gone and the backbone was fine-tuned "
            "after it was built, so it cannot be rebuilt: copy the bank back."
        )
    else:  # a frozen backbone encodes the training pairs as it did when the bank was built
        model.memory = None
        model.add_to_memory(feat[pair_layout(feat, config)[0]], config["eval_batch_size"])
    if config["memory_update"]:
        model.add_to_memory(valid_dataset.inter_feat, config["eval_batch_size"])


class RaSeRecTrainer(Trainer):
    resume_in_fit = False  # resume_path is a stage's checkpoint: resumed where that stage starts
    pretrain_file = None  # stage 1's best checkpoint, once stage 1 has run here

    def __init__(self, config, model):
        super().__init__(config, model)
        self.memory_source = check_memory_source(config["memory_source"])  # before stage 1, not after it
        self.valid_data = None
        self.memory_has_valid = False

    def _stage_file(self, stage):
        """A file name for a stage's output (claimed, so never another run's, when written)."""
        name = f"{self.config['model']}-{self.config['dataset']}-{stage}-{get_local_time()}"
        return os.path.join(self.checkpoint_dir, name + (".npz" if stage == "memory" else ".pth"))

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self.valid_data = valid_data
        self.know_items(train_data.dataset)
        self.check_bank_fits(len(train_data.dataset))
        probe = train_data.dataset.inter_feat[: self.config["eval_batch_size"]].to(self.device)
        self.model.check_scoring(probe)  # a backbone RAFT cannot wrap is refused before stage 1
        resume_stage, checkpoint = self.resume_stage()
        if resume_stage is None:
            self.check_collection_is_new()
        if resume_stage == "raft":  # stage 1 is done: its weights are in the stage-2 checkpoint
            self.model.load_state_dict(checkpoint["state_dict"])
        else:
            self.pretrain(train_data, valid_data, verbose, saved, show_progress, resume=resume_stage == "pretrain")
        try:
            self.model.check_scoring(probe)  # again with stage 1's weights (a term that starts at 0)
            self.build_memory(train_data.dataset, show_progress)
            return self.finetune(
                train_data, valid_data, verbose, saved, show_progress, callback_fn, resume=resume_stage == "raft"
            )
        except RecBoleRagError as err:
            stage1 = self.config["pretrained_path"] or (self.pretrain_file if saved else None)
            if stage1:
                raise type(err)(f"{err} Stage 1 is saved: start again from it with --pretrained_path={stage1}") from err
            raise

    def check_bank_fits(self, n_pairs):
        """Settings a bank of the training pairs cannot meet, refused before stage 1, not after."""
        if self.memory_source != "pairs":
            return
        c = self.config
        if c["retrieval_k"] > n_pairs - 1:
            raise ConfigError(
                f"retrieval_k={c['retrieval_k']} is larger than the memory bank ({n_pairs} "
                "training pairs, one is each query's own): lower retrieval_k."
            )
        ivf = index_for_size(c["memory_index"], n_pairs) == "ivf"
        if ivf and c["memory_nlist"] is not None and c["memory_nlist"] > n_pairs:
            raise ConfigError(
                f"memory_index={c['memory_index']} with memory_nlist={c['memory_nlist']} needs at least that many "
                f"training pairs, this training set has {n_pairs}: lower memory_nlist."
            )

    def check_collection_is_new(self):
        """A new run never replaces a Milvus collection another run built: that run's checkpoint
        names it and could no longer be evaluated. (A run's own default name is new each run.)"""
        c = self.config
        if self.model.memory_backend() != "milvus" or not c["memory_collection"]:
            return
        settings = self.model.milvus_settings()
        client = connect(settings["uri"], settings["token"])
        try:
            taken = client.has_collection(c["memory_collection"])
        finally:
            client.close()
        if taken:
            raise ConfigError(
                f"Milvus collection '{c['memory_collection']}' at '{settings['uri']}' already holds a bank (an "
                "earlier run's checkpoint names it): set memory_collection to a new name, leave it unset for a "
                "name of this run's own, or drop that collection."
            )

    def resume_stage(self):
        """(stage, checkpoint) of ``resume_path``, checked; (None, None) without one."""
        path = self.config["resume_path"]
        if not path:
            return None, None
        if self.config["pretrained_path"]:
            raise ConfigError(
                "Give resume_path (continue a RaSeRec run) or pretrained_path (start RAFT from a backbone), not both."
            )
        checkpoint = load_checkpoint(path, self.device)
        stage = (checkpoint.get("other_parameter") or {}).get("stage")
        if checkpoint["config"].get("model") != "RaSeRec" or stage not in ("pretrain", "raft"):
            raise CheckpointError(
                f"'{path}' is not a RaSeRec stage checkpoint (it holds a "
                f"{checkpoint['config'].get('model')} model): use pretrained_path "
                "to start RAFT from a backbone."
            )
        check_same_items(checkpoint, self.train_dataset, path)
        check_fits(self.model, checkpoint, path)
        return stage, checkpoint

    def pretrain(self, train_data, valid_data, verbose, saved, show_progress, resume=False):
        """Stage 1 (continued from ``resume_path`` when ``resume``), or the backbone of
        ``pretrained_path``."""
        path = self.config["pretrained_path"]
        if path:
            checkpoint = load_checkpoint(path, self.device)
            check_same_items(checkpoint, train_data.dataset, path)
            self.model.load_backbone_checkpoint(checkpoint, path)
            self.logger.info(set_color("Stage 1", "green") + f": backbone loaded from {path}")
            return
        backbone = self.model.backbone_name
        what = "collaborative pre-training (DuoRec)" if backbone == "DuoRec" else f"{backbone}, its own loss"
        self.logger.info(set_color("Stage 1", "green") + f": {what}")
        self.model.stage = "pretrain"
        self.saved_model_file = self._stage_file("pretrain")
        if resume:
            self.resume_checkpoint(self.config["resume_path"])
        super().fit(train_data, valid_data, verbose, saved, show_progress)
        self.pretrain_file = self.saved_model_file
        if saved:  # continue from the best stage-1 epoch, not the last
            self.model.load_state_dict(load_checkpoint(self.saved_model_file, self.device)["state_dict"])

    def build_memory(self, train_dataset, show_progress):
        """Every training <prefix, next item> pair, keyed by the backbone's user vector
        (``memory_source: patterns``: mined patterns' prefixes, see recbole_rag.memory.builders)."""
        if self.memory_source == "patterns":
            self.model.memory, self.entry_stop = build_pattern_memory(
                self.model, train_dataset, self.config, show_progress
            )
            self.model.memory_file = None
            self.logger.info(set_color("Memory", "green") + f": {self.model.memory} of pattern prefixes")
            return
        feat = train_dataset.inter_feat
        order, memory_id, memory_stop = pair_layout(feat, self.config)
        path = self.config["memory_path"]
        if self.model.memory_backend() == "milvus":  # the collection is the stored bank
            start = time.perf_counter()
            self.model.memory = None
            self.model.add_to_memory(feat[order], self.config["eval_batch_size"], show_progress)
            self.logger.info(
                set_color("Memory", "green") + f": {self.model.memory} built in {time.perf_counter() - start:.1f}s"
            )
            path = None
        elif path and os.path.isfile(path):
            self.model.memory = self.model.on_backend(load_pair_memory(self.model, feat, order, path, self.config))
            self.logger.info(set_color("Memory", "green") + f": {self.model.memory} loaded from {path}")
        else:
            start = time.perf_counter()
            self.model.memory = None
            self.model.add_to_memory(feat[order], self.config["eval_batch_size"], show_progress)
            path = path or claim_path(self._stage_file("memory"))
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self.model.memory.save(path)
            self.logger.info(
                set_color("Memory", "green")
                + f": {self.model.memory} built in {time.perf_counter() - start:.1f}s, saved to {path}"
            )
        self.model.memory_file = os.path.abspath(path) if path else None  # a RAFT checkpoint names its bank
        feat.update(Interaction({MEMORY_ID: torch.from_numpy(memory_id), MEMORY_STOP: torch.from_numpy(memory_stop)}))
        self.entry_stop = memory_stop[order]  # per bank entry: where its user's entries end

    def finetune(self, train_data, valid_data, verbose, saved, show_progress, callback_fn, resume=False):
        """Stage 2: retrieval-augmented fine-tuning, early-stopped on the valid metric (continued
        from ``resume_path`` when ``resume``)."""
        self.logger.info(set_color("Stage 2", "green") + ": retrieval-augmented fine-tuning")
        self.model.start_raft()
        if self.model.freeze_backbone and self.memory_source == "pairs":
            # (a pattern bank holds no training pair: training queries search it per batch)
            start = time.perf_counter()
            self.model.cache_training_neighbours(self.entry_stop, show_progress=show_progress)
            self.logger.info(
                set_color("Memory", "green") + f": top-{self.model.retrieval_k} of every "
                f"training pair retrieved in {time.perf_counter() - start:.1f}s"
            )
        # keep stage 1's epochs apart from stage 2's (RecBole keys them by epoch index)
        self.train_loss_dict = {("pretrain", k): v for k, v in self.train_loss_dict.items()}
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = self._build_optimizer(params=trainable, learning_rate=self.config["raft_learning_rate"])
        self.epochs = self.config["raft_epochs"] or self.config["epochs"]
        self.start_epoch, self.cur_step, self.best_valid_result = 0, 0, None
        self.best_valid_score = -np.inf if self.valid_metric_bigger else np.inf
        self.saved_model_file = self._stage_file("raft")
        if resume:
            self.resume_checkpoint(self.config["resume_path"])
        return super().fit(self.raft_loader(train_data), valid_data, verbose, saved, show_progress, callback_fn)

    def raft_loader(self, train_data):
        """The training loader at ``raft_train_batch_size`` (a new one over the same rows, seeded
        like RecBole's, when that differs from stage 1's batch size)."""
        batch_size = self.config["raft_train_batch_size"]
        if not batch_size or batch_size == self.config["train_batch_size"]:
            return train_data
        stage1_batch_size = self.config["train_batch_size"]
        self.config["train_batch_size"] = batch_size  # read once, when the loader is built
        try:
            loader = type(train_data)(self.config, train_data.dataset, train_data._sampler, shuffle=train_data.shuffle)
        finally:
            self.config["train_batch_size"] = stage1_batch_size
        self.logger.info(set_color("Stage 2", "green") + f": training batches of {batch_size}")
        return loader

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if (
            load_best_model
            and self.config["memory_update"]
            and self.valid_data is not None
            and not self.memory_has_valid
            and self.model.stage == "raft"
        ):
            # Testing comes after validation: its interactions are known history now, encoded by
            # the weights under test (loaded once, here).
            self.load_best(model_file)
            added = self.model.add_to_memory(self.valid_data.dataset.inter_feat, self.config["eval_batch_size"])
            self.memory_has_valid = True
            self.logger.info(set_color("Memory", "green") + f": +{len(added)} validation pairs before testing")
            load_best_model = False
        return super().evaluate(eval_data, load_best_model, model_file, show_progress)
