"""SRACLTrainer: semantic vectors and neighbour tables once before training (recbole_rag.semantic,
embeddings cached to a file), then RecBole's loop, with the retrieved units' representations
refreshed each epoch under ``cross_view: memory``; ``resume_path`` continues an interrupted run
once the synthesis module and its optimizer exist (recbole_rag.trainer.safe_checkpoint)."""

import time

from recbole.utils import set_color

from recbole_rag.semantic import build_semantics
from recbole_rag.trainer import Trainer


class SRACLTrainer(Trainer):
    def __init__(self, config, model):
        super().__init__(config, model)
        self.run_info = {}

    def prepare_semantics(self, train_dataset, show_progress=False):
        start = time.perf_counter()
        semantics = build_semantics(
            self.config,
            train_dataset,
            show_progress,
            user_texts=self.model.cross_retrieval == "user",
            prefix_texts=self.model.prefix_texts,
        )
        self.model.prepare(semantics, train_dataset.inter_feat)
        self.run_info = {"semantic_source": semantics.source, "semantic_texts_embedded": semantics.embedded}
        self.logger.info(
            set_color("Semantics", "green") + f": {semantics.source}; {semantics.embedded} texts embedded; "
            f"neighbour tables built in {time.perf_counter() - start:.1f}s"
        )
        return semantics

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self.prepare_semantics(train_data.dataset, show_progress)
        self.optimizer = self._build_optimizer()  # prepare() added the synthesis module's parameters
        return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if self.model.cross_weight and self.model.cross_view == "memory":
            self.model.refresh_memory(self.config["eval_batch_size"])
        self.model.reset_terms()
        loss = super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
        terms = self.model.reset_terms()  # unweighted, so each term reads on its own scale
        self.logger.info(
            set_color("Loss terms", "blue")
            + f" (epoch {epoch_idx}, mean per batch, unweighted): "
            + ", ".join(f"{term} {value:.4f}" for term, value in terms.items())
        )
        return loss
