"""Checkpoint files: written atomically, read with ``torch.load(weights_only=True)``, checked.

RecBole pickles its whole Config into every checkpoint, which torch's safe loader refuses (and
torch >= 2.6 uses the safe loader by default). Here a checkpoint holds only tensors and plain
values, and is written atomically, so a crash never leaves half a file behind. A checkpoint also
records the items and the training split it was trained on, so it never loads onto other ones.
Every room may use this module: it imports only errors and files.
"""

import hashlib
import numbers
import os
import pickle
from enum import Enum

import torch

from recbole_rag.errors import CheckpointError
from recbole_rag.files import atomic_path

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


def _first_line(err):
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _not_whole(path, err):
    return (
        f"'{path}' is not a whole checkpoint (truncated, damaged or another kind of file): "
        f"torch.load says {type(err).__name__}: {_first_line(err)}"
    )


def load_checkpoint(path, map_location="cpu"):
    """Load a checkpoint with the safe (weights_only) loader; never falls back to unsafe pickle."""
    path = str(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"No checkpoint file at '{path}'.")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as err:
        if any(w in str(err) for w in ("Unsupported global", "Unsupported class", "GLOBAL ")):
            # a pickled object, e.g. RecBole's Config (torch's wording differs across versions)
            raise CheckpointError(
                f"'{path}' cannot be loaded safely (torch.load weights_only=True): {_first_line(err)}. "
                "Checkpoints saved by RecBole's own Trainer pickle a Config object; re-train with "
                "run_recbole_rag.py, whose trainers save plain checkpoints."
            ) from err
        raise CheckpointError(_not_whole(path, err)) from err
    except (EOFError, KeyError, OSError, ValueError) as err:
        raise CheckpointError(_not_whole(path, err)) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"'{path}' holds no model weights (no 'state_dict'): it is not a checkpoint of a run.")
    return checkpoint


TRAINING_STATE = ("optimizer",)  # what only a run that goes on needs


def drop_training_state(path):
    """Rewrite the checkpoint at ``path`` without its optimizer state (two thirds of a model's
    file): what evaluating it, starting from it (pretrained_path) or resuming a finished run's
    ``-last`` checkpoint need stays. Returns the bytes saved."""
    checkpoint = load_checkpoint(path)
    if not any(key in checkpoint for key in TRAINING_STATE):
        return 0
    before = os.path.getsize(path)
    save_checkpoint({k: v for k, v in checkpoint.items() if k not in TRAINING_STATE}, path)
    return before - os.path.getsize(path)


def last_file_of(best_file):
    """Where the per-epoch state of a run whose best checkpoint is ``best_file`` is kept."""
    stem, ext = os.path.splitext(str(best_file))
    return f"{stem}-last{ext or '.pth'}"


def item_vocabulary(dataset):
    """A fingerprint of a dataset's item ids (the token behind each internal id). Checkpoints
    record it, so weights never load onto another dataset whose ids mean other items."""
    tokens = dataset.field2id_token[dataset.iid_field]
    return hashlib.sha1("\n".join(map(str, tokens)).encode("utf-8")).hexdigest()[:16]


def training_rows(dataset):
    """(rows, fingerprint) of a training split: its users, items and their order. Under
    leave-one-out any interaction added to or dropped from the data file changes the training
    split, so a checkpoint that records it knows whether it is tested on the split it was."""
    feat = dataset.inter_feat
    digest = hashlib.sha1("\n".join(map(str, dataset.field2id_token[dataset.uid_field])).encode("utf-8"))
    for field in (dataset.uid_field, dataset.iid_field):
        digest.update(feat[field].numpy().tobytes())
    return len(feat), digest.hexdigest()[:16]


def check_same_split(checkpoint, dataset, path):
    """A clear error if the data files changed since ``checkpoint``'s run (checkpoints older than
    the record pass)."""
    saved = checkpoint.get("training_rows")
    if saved and list(saved) != list(training_rows(dataset)):
        raise CheckpointError(
            f"'{path}' was trained on another version of dataset {dataset.dataset_name}: its training split "
            f"had {saved[0]} rows, the data files now give {len(dataset.inter_feat)} (or other ones), so its "
            "test would not be the run's: restore the files it ran on."
        )


def check_same_items(checkpoint, dataset, path):
    """A clear error if ``checkpoint`` was trained on items other than ``dataset``'s (checkpoints
    older than the fingerprint: if its dataset has another name)."""
    saved, name = checkpoint.get("item_vocabulary"), checkpoint.get("config", {}).get("dataset")
    same = saved == item_vocabulary(dataset) if saved else name == dataset.dataset_name
    if not same:
        raise CheckpointError(
            f"'{path}' was trained on dataset {name}, whose item ids are not those of "
            f"{dataset.dataset_name}: its item i is another item here. Use a checkpoint "
            f"trained on {dataset.dataset_name}."
        )


def check_fits(model, checkpoint, path):
    """A clear error, instead of torch's key list, when ``checkpoint`` holds another model shape."""
    own = model.state_dict()
    misfit = [k for k, v in checkpoint["state_dict"].items() if k not in own or own[k].shape != v.shape]
    if misfit or len(checkpoint["state_dict"]) != len(own):
        raise CheckpointError(
            f"'{path}' does not fit this model (dataset {checkpoint['config'].get('dataset')}, "
            f"hidden_size {checkpoint['config'].get('hidden_size')}): {misfit[:3]}"
        )
