"""Trainers: RecBole's, with plain checkpoints, and the plug-in's multi-stage ones."""

from recbole.trainer import Trainer as _RecBoleTrainer

from recbole_rag.checkpoint import load_checkpoint, save_checkpoint
from recbole_rag.trainer.safe_checkpoint import SafeCheckpointMixin, with_safe_checkpoints

Trainer = with_safe_checkpoints(_RecBoleTrainer)

__all__ = ["Trainer", "SafeCheckpointMixin", "load_checkpoint", "save_checkpoint", "with_safe_checkpoints"]
