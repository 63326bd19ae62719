"""Trainers whose runs save plain checkpoints (recbole_rag.checkpoint) and resume exactly.

RecBole writes a checkpoint only at the best epoch, so resuming from it repeats the epochs after
it and restarts early stopping. Beside the best file ``M-<time>.pth`` this trainer also keeps
``M-<time>-last.pth``, rewritten after each validated epoch with everything the next epoch
depends on (optimizer, early-stopping counter, best score and result, random states, the
training loader's shuffling state): ``resume_path`` to it continues as if never stopped.
"""

import functools
import os
import random
import shutil
import time
import warnings

import numpy as np
import torch
from recbole.utils import set_color

from recbole_rag.checkpoint import (
    check_fits,
    check_same_items,
    item_vocabulary,
    last_file_of,
    load_checkpoint,
    plain,
    plain_config,
    save_checkpoint,
    training_rows,
)
from recbole_rag.errors import CheckpointError
from recbole_rag.files import atomic_path, claim_path


def _random_states(train_data):
    states = {
        "torch": torch.get_rng_state(),
        "numpy": list(np.random.get_state()),
        "python": list(random.getstate()),
        "loader": train_data.generator.get_state(),
    }
    states["numpy"][1] = torch.from_numpy(states["numpy"][1].astype(np.int64))
    states["python"][1] = list(states["python"][1])
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_random_states(states, train_data):
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    train_data.generator.set_state(states["loader"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# What a best checkpoint holds besides its weights (rebuilt from a -last checkpoint when gone).
BEST_KEYS = ("config", "cur_step", "best_valid_score", "item_vocabulary", "training_rows")
# Settings a resumed optimizer keeps from its run, whatever the resuming command says.
OPTIMIZER_SETTINGS = ("learning_rate", "raft_learning_rate", "weight_decay")


def _warn_kept_settings(saved, config, path):
    changed = [
        f"{key} {saved[key]!r} (this command: {config[key]!r})"
        for key in OPTIMIZER_SETTINGS
        if key in saved and key in config and saved[key] != config[key]
    ]
    if changed:
        warnings.warn(
            f"Resuming '{path}' continues its run as it was: its optimizer keeps {', '.join(changed)}. "
            "To train on with new settings, start from its weights with pretrained_path instead.",
            stacklevel=3,
        )


class SafeCheckpointMixin:
    """Put before a RecBole trainer class to make its checkpoints plain and atomic, and each
    run's own: RecBole names a checkpoint by model and clock second, so two runs started in the
    same second would overwrite (and test) each other's; the first save claims a free name.

    ``resume_path`` (a best or a ``-last`` checkpoint) is applied when ``fit`` starts, and so is
    ``pretrained_path`` (a checkpoint of the same model: its weights, then training from epoch 0);
    a trainer that starts from them at another point (a multi-stage one) sets
    ``resume_in_fit = False``. Either must hold the training set's items."""

    claimed_file = None  # the checkpoint file this run has claimed (or resumed from)
    resume_in_fit = True
    train_items = None  # item_vocabulary of the training set, once fit has seen it
    train_split = None  # training_rows of the training set, once fit has seen it
    _best_state = None  # the best epoch's weights, kept for the -last checkpoint
    train_dataset = None
    resumed_train_s = 0.0  # training seconds spent before the resumed checkpoint
    best_epoch = None
    _pending_random_states = None

    def __init__(self, config, model):
        super().__init__(config, model)
        self._clock = time.perf_counter()

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self.know_items(train_data.dataset)
        if self.resume_in_fit and self.claimed_file is None:
            if self.config["resume_path"] and self.config["pretrained_path"]:
                raise CheckpointError(
                    "Give resume_path (continue a run) or pretrained_path (start from a model's weights), not both."
                )
            if self.config["resume_path"]:
                self.resume_checkpoint(self.config["resume_path"])
            elif self.config["pretrained_path"]:
                self.load_pretrained(self.config["pretrained_path"])
        self.restore_random_states(train_data)
        self.stopped_early = self.cur_step > self.stopping_step  # a resumed run that had stopped early
        if self.stopped_early:
            self.start_epoch = self.epochs  # it is finished: nothing to train, its best file stays
            self.logger.info("The resumed run had stopped early: nothing to train; testing its best epoch.")

        def after_validation(epoch_idx, valid_score):
            self.stopped_early = self.cur_step > self.stopping_step
            if saved:
                self._save_last(epoch_idx, train_data)
            if callback_fn:
                callback_fn(epoch_idx, valid_score)

        return super().fit(train_data, valid_data, verbose, saved, show_progress, after_validation)

    def restore_random_states(self, train_data):
        """The random states a resumed ``-last`` checkpoint saved, set once training starts."""
        if self._pending_random_states is not None:
            _set_random_states(self._pending_random_states, train_data)
            self._pending_random_states = None

    def know_items(self, dataset):
        self.train_dataset, self.train_items = dataset, item_vocabulary(dataset)
        self.train_split = training_rows(dataset)

    def load_pretrained(self, path):
        """Start from the weights of a checkpoint of the same model (epoch 0, a new optimizer)."""
        checkpoint = load_checkpoint(path, map_location=self.device)
        if checkpoint.get("config", {}).get("model") != self.config["model"]:
            raise CheckpointError(
                f"'{path}' holds a {checkpoint.get('config', {}).get('model')} model, not "
                f"{self.config['model']}: pretrained_path needs a checkpoint of the same model."
            )
        check_same_items(checkpoint, self.train_dataset, path)
        check_fits(self.model, checkpoint, path)
        self.model.load_state_dict(checkpoint["state_dict"])
        self.logger.info(f"Weights loaded from {path}; training starts at epoch 0.")

    def train_seconds(self):
        """Training time of this run, the part before a resume included."""
        return self.resumed_train_s + time.perf_counter() - self._clock

    def _state(self, epoch):
        return {
            "config": plain_config(self.config),
            "epoch": int(epoch),
            "cur_step": int(self.cur_step),
            "best_valid_score": float(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": plain(self.model.other_parameter()),
            "optimizer": self.optimizer.state_dict(),
            "item_vocabulary": self.train_items,
            "training_rows": list(self.train_split) if self.train_split else None,
        }

    def _save_last(self, epoch, train_data):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        if self.saved_model_file != self.claimed_file:  # no best epoch yet: claim the best file's name
            self.saved_model_file = self.claimed_file = claim_path(self.saved_model_file)
        state = self._state(epoch)
        state.update(
            best_file=os.path.abspath(self.saved_model_file),
            best_state=self._best_state,  # the best epoch's weights: the -last alone carries a run elsewhere
            best_epoch=self.best_epoch,
            best_valid_result=plain(self.best_valid_result),
            train_s=self.train_seconds(),
            train_loss=[[list(k) if isinstance(k, tuple) else k, float(v)] for k, v in self.train_loss_dict.items()],
            random_states=_random_states(train_data),
        )
        save_checkpoint(state, last_file_of(self.saved_model_file))

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        if "saved_model_file" not in kwargs and self.saved_model_file != self.claimed_file:
            self.saved_model_file = self.claimed_file = claim_path(self.saved_model_file)
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        if epoch < 0 and os.path.isfile(saved_model_file) and os.path.getsize(saved_model_file):
            return  # RecBole's save when a resumed run has no epoch left: its best file is the run's best
        save_checkpoint(self._state(epoch), saved_model_file)
        if epoch >= 0:  # RecBole saves at epoch -1 when a resumed run has no epoch left
            self.best_epoch = int(epoch)
            self._best_state = {
                "state_dict": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
                "other_parameter": plain(self.model.other_parameter()),
            }
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")

    def resume_checkpoint(self, resume_file):
        checkpoint = load_checkpoint(resume_file, map_location=self.device)
        if checkpoint["config"].get("model") != self.config["model"]:
            raise CheckpointError(
                f"'{resume_file}' was saved by model {checkpoint['config'].get('model')}, not {self.config['model']}."
            )
        if self.train_dataset is not None:
            check_same_items(checkpoint, self.train_dataset, resume_file)
        check_fits(self.model, checkpoint, resume_file)
        self.saved_model_file = self.claimed_file = self._continued_best(resume_file, checkpoint)
        self._best_state = checkpoint.get("best_state")
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        if "optimizer" in checkpoint:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        elif self.start_epoch < self.epochs and self.cur_step <= self.stopping_step:
            raise CheckpointError(
                f"'{resume_file}' holds weights only (no optimizer state), so the run cannot go on as it was: "
                "start from its weights with pretrained_path, or resume from its -last checkpoint."
            )  # a finished run's weights-only checkpoint resumes: nothing is left to train
        _warn_kept_settings(checkpoint["config"], self.config, resume_file)
        if checkpoint.get("best_file"):
            self.best_epoch = checkpoint["best_epoch"]
            self.best_valid_result = checkpoint["best_valid_result"]
            self.resumed_train_s = checkpoint["train_s"]
            self.train_loss_dict = {tuple(k) if isinstance(k, list) else k: v for k, v in checkpoint["train_loss"]}
            self._pending_random_states = checkpoint["random_states"]
        else:
            self.best_epoch = checkpoint["epoch"]
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    def _continued_best(self, resume_file, checkpoint):
        """The best file a resumed run goes on writing: a best checkpoint itself (the run goes on in
        its own file); for a ``-last`` checkpoint, its run's best file beside it (a moved run
        folder), else one made beside it, so a run resumed from a copy in another folder never
        writes into the original run's files: a copy of the original's best file, or the best
        weights the ``-last`` checkpoint carries."""
        best_file = checkpoint.get("best_file")
        if best_file is None:
            return str(resume_file)
        beside = os.path.join(os.path.dirname(resume_file), os.path.basename(best_file))
        if os.path.isfile(beside):
            return beside
        one_process = self.config["single_spec"] or self.config["local_rank"] == 0
        if checkpoint.get("best_state") and not os.path.isfile(best_file):
            if one_process:
                best = {k: v for k, v in checkpoint.items() if k in BEST_KEYS}
                save_checkpoint(
                    {**best, **checkpoint["best_state"], "epoch": checkpoint["best_epoch"], "cur_step": 0}, beside
                )
            return beside
        if not os.path.isfile(best_file):
            raise CheckpointError(
                f"'{resume_file}' continues the run whose best checkpoint is '{best_file}', which is gone: "
                "start that run again."
            )
        if one_process:  # one process copies, whole or not at all
            with atomic_path(beside) as tmp:
                shutil.copyfile(best_file, tmp)
        return beside

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if eval_data and load_best_model:
            self.load_best(model_file)
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)

    def load_best(self, model_file=None):
        """The weights (and saved attributes) of ``model_file``, by default this run's best checkpoint."""
        checkpoint_file = model_file or self.saved_model_file
        checkpoint = load_checkpoint(checkpoint_file, map_location=self.device)
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")


@functools.cache
def with_safe_checkpoints(trainer_class):
    """``trainer_class`` with SafeCheckpointMixin in front; one class per base, same name."""
    return type(trainer_class.__name__, (SafeCheckpointMixin, trainer_class), {})
