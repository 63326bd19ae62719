"""Checkpoints that load with ``torch.load(weights_only=True)``.

RecBole pickles its whole Config into every checkpoint, which torch's safe loader refuses (and
torch >= 2.6 uses the safe loader by default). Here a checkpoint holds only tensors and plain
values, and is written atomically, so a crash never leaves half a file behind.
"""
import functools
import numbers
import os
import pickle
from enum import Enum

import torch
from recbole.utils import set_color

from recbole_rag.errors import CheckpointError
from recbole_rag.files import atomic_path, claim_path

_DROP = object()


def plain(value):
    """``value`` as str/int/float/bool/None/list/dict/tensor only; ``_DROP`` if it has no such form."""
    if value is None or isinstance(value, (str, bool, torch.Tensor)):
        return value
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        items = [plain(v) for v in value]
        return _DROP if any(v is _DROP for v in items) else items
    if isinstance(value, dict):
        items = {str(k): plain(v) for k, v in value.items()}
        return {k: v for k, v in items.items() if v is not _DROP}
    return _DROP


def plain_config(config):
    """The settings of a RecBole Config that have a plain form (device, Enums' objects dropped)."""
    return plain(dict(config.final_config_dict))


def save_checkpoint(state, path):
    """Write ``state`` (plain values and tensors) to ``path`` atomically."""
    with atomic_path(path) as tmp_path:
        torch.save(state, tmp_path)


def load_checkpoint(path, map_location="cpu"):
    """Load a checkpoint with the safe (weights_only) loader; never falls back to unsafe pickle."""
    path = str(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"No checkpoint file at '{path}'.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise CheckpointError(
            f"'{path}' cannot be loaded safely (torch.load weights_only=True): {err}. "
            "Checkpoints saved by RecBole's own Trainer pickle a Config object; re-train with "
            "run_recbole_rag.py, whose trainers save plain checkpoints."
        ) from err


class SafeCheckpointMixin:
    """Put before a RecBole trainer class to make its checkpoints plain and atomic, and each
    run's own: RecBole names a checkpoint by model and clock second, so two runs started in the
    same second would overwrite (and test) each other's; the first save claims a free name."""

    claimed_file = None  # the checkpoint file this run has claimed (or resumed from)

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        if "saved_model_file" not in kwargs and self.saved_model_file != self.claimed_file:
            self.saved_model_file = self.claimed_file = claim_path(self.saved_model_file)
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        state = {
            "config": plain_config(self.config),
            "epoch": int(epoch),
            "cur_step": int(self.cur_step),
            "best_valid_score": float(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": plain(self.model.other_parameter()),
            "optimizer": self.optimizer.state_dict(),
        }
        save_checkpoint(state, saved_model_file)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")

    def resume_checkpoint(self, resume_file):
        checkpoint = load_checkpoint(resume_file, map_location=self.device)
        if checkpoint["config"].get("model") != self.config["model"]:
            raise CheckpointError(
                f"'{resume_file}' was saved by model {checkpoint['config'].get('model')}, "
                f"not {self.config['model']}."
            )
        check_fits(self.model, checkpoint, resume_file)
        self.saved_model_file = self.claimed_file = str(resume_file)
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if eval_data and load_best_model:
            checkpoint_file = model_file or self.saved_model_file
            checkpoint = load_checkpoint(checkpoint_file, map_location=self.device)
            self.model.load_state_dict(checkpoint["state_dict"])
            self.model.load_other_parameter(checkpoint.get("other_parameter"))
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)


def check_fits(model, checkpoint, path):
    """A clear error, instead of torch's key list, when ``checkpoint`` holds another model shape."""
    own = model.state_dict()
    misfit = [k for k, v in checkpoint["state_dict"].items() if k not in own or own[k].shape != v.shape]
    if misfit or len(checkpoint["state_dict"]) != len(own):
        raise CheckpointError(f"'{path}' does not fit this model (dataset {checkpoint['config'].get('dataset')}, "
                              f"hidden_size {checkpoint['config'].get('hidden_size')}): {misfit[:3]}")


@functools.lru_cache(maxsize=None)
def with_safe_checkpoints(trainer_class):
    """``trainer_class`` with SafeCheckpointMixin in front; one class per base, same name."""
    return type(trainer_class.__name__, (SafeCheckpointMixin, trainer_class), {})
