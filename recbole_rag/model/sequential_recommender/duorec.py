"""DuoRec (Qiu et al., WSDM 2022, arXiv 2110.05730).

A SASRec encoder trained with softmax cross-entropy over all items plus contrastive
regularisation: InfoNCE between a model-level dropout view of each sequence and another training
sequence with the same next item (``contrast: us_x``, the paper's DuoRec), with the other
sequences of the batch as negatives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from recbole_rag.errors import ConfigError
from recbole_rag.model.encoder_recommender import EncoderRecommender
from recbole_rag.model.layers import SASRecEncoder

if TYPE_CHECKING:
    from recbole.config import Config
    from recbole.data.dataset import Dataset
    from recbole.data.interaction import Interaction

CONTRASTS = ("us_x", "un", "su", "us", "none")


class SameTargetSampler:
    """Draws, for each target item, a training sequence with the same target (DuoRec's
    supervised positive), preferring one that differs from the query sequence."""

    def __init__(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor, targets: torch.Tensor, n_items: int) -> None:
        self.item_seq, self.item_seq_len = item_seq, item_seq_len
        self.rows_by_target = torch.argsort(targets, stable=True)
        self.counts = torch.bincount(targets, minlength=n_items)
        self.starts = torch.cumsum(self.counts, 0) - self.counts

    def to(self, device: torch.device | str) -> SameTargetSampler:
        for name in ("item_seq", "item_seq_len", "rows_by_target", "counts", "starts"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def _draw(self, targets: torch.Tensor) -> torch.Tensor:
        counts = self.counts[targets].clamp(min=1)
        offsets = (torch.rand(targets.shape, device=targets.device) * counts).long()
        return self.rows_by_target[self.starts[targets] + offsets.clamp(max=counts - 1)]

    def sample(self, item_seq: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, L) query sequences, (batch,) targets -> same-target sequences and lengths.
        A target seen only once gives the query's own sequence (its other dropout view)."""
        if self.item_seq.device != targets.device:
            self.to(targets.device)
        rows = self._draw(targets)
        width = min(item_seq.shape[1], self.item_seq.shape[1])
        is_self = (self.item_seq[rows, :width] == item_seq[:, :width]).all(1)
        rows = torch.where(is_self, self._draw(targets), rows)
        return self.item_seq[rows], self.item_seq_len[rows]


def info_nce(z_i: torch.Tensor, z_j: torch.Tensor, temperature: float, similarity: str = "dot") -> torch.Tensor:
    """Symmetric InfoNCE over 2B views: (z_i[b], z_j[b]) are positives, all other views of the
    batch are negatives (DuoRec's formulation)."""
    batch = z_i.shape[0]
    z = torch.cat([z_i, z_j], dim=0)
    if similarity == "cos":
        z = F.normalize(z, dim=-1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    labels = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)]).to(z.device)
    return F.cross_entropy(sim, labels)


class DuoRec(EncoderRecommender):
    """SASRec + DuoRec's contrastive regularisation; scores are h . item embedding."""

    def __init__(self, config: Config, dataset: Dataset) -> None:
        super().__init__(config, dataset)
        if config["contrast"] not in CONTRASTS:
            raise ConfigError(f"contrast must be one of {', '.join(CONTRASTS)}, got {config['contrast']!r}.")
        for key in ("lmd", "lmd_sem"):
            if config[key] < 0:
                raise ConfigError(f"{key} must be >= 0, got {config[key]}.")
        if config["tau"] <= 0:
            raise ConfigError(f"tau must be > 0, got {config['tau']}.")
        if config["sim"] not in ("dot", "cos"):
            raise ConfigError(f"sim must be dot or cos, got {config['sim']!r}.")
        self.contrast, self.sim = config["contrast"], config["sim"]
        self.lmd, self.lmd_sem, self.tau = config["lmd"], config["lmd_sem"], config["tau"]
        self.encoder = SASRecEncoder.from_config(config, self.n_items, self.max_seq_length)
        self.same_target = None
        if self.contrast in ("su", "us", "us_x"):
            feat = dataset.inter_feat
            self.same_target = SameTargetSampler(
                feat[self.ITEM_SEQ], feat[self.ITEM_SEQ_LEN], feat[self.POS_ITEM_ID], self.n_items
            )

    def views(self, interaction: Interaction) -> tuple[torch.Tensor, ...]:
        """Every encoder pass a training step needs, run as one stacked batch (independent
        dropout per row): the sequence, and the extra views ``contrast`` asks for."""
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        seqs, lens = [item_seq], [item_seq_len]
        if self.contrast in ("un", "us", "us_x"):  # a second dropout view of the sequence
            seqs.append(item_seq)
            lens.append(item_seq_len)
        if self.contrast in ("su", "us", "us_x"):  # a sequence with the same next item
            sem_seq, sem_len = self.same_target.sample(item_seq, interaction[self.POS_ITEM_ID])
            seqs.append(sem_seq[:, : item_seq.shape[1]])
            lens.append(sem_len)
        return self.forward(torch.cat(seqs), torch.cat(lens)).chunk(len(seqs))

    def contrastive_loss(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """DuoRec's regularisers given ``views()`` (0 when ``contrast: none``)."""
        if self.contrast == "none":
            return views[0].new_zeros(())
        if self.contrast == "un":
            return self.lmd * info_nce(views[0], views[1], self.tau, self.sim)
        if self.contrast == "su":
            return self.lmd_sem * info_nce(views[0], views[1], self.tau, self.sim)
        if self.contrast == "us_x":
            return self.lmd_sem * info_nce(views[1], views[2], self.tau, self.sim)
        return self.lmd * info_nce(views[0], views[1], self.tau, self.sim) + self.lmd_sem * info_nce(
            views[0], views[2], self.tau, self.sim
        )

    def calculate_loss(self, interaction: Interaction) -> torch.Tensor:
        views = self.views(interaction)
        logits = views[0] @ self.item_embedding.weight.T
        loss = F.cross_entropy(logits, interaction[self.POS_ITEM_ID])
        return loss + self.contrastive_loss(views)
