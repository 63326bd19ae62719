"""Inference from a saved run, the RecBole way.

``load_data_and_model(checkpoint)`` returns what ``recbole.quick_start.load_data_and_model``
returns (config, model, dataset, train/valid/test loaders) for a checkpoint of any model trained
with recbole-rag, ours or RecBole's, so RecBole's ``full_sort_topk`` works on it. A RaSeRec model
comes back with the memory bank its test used. ``recommend`` gives top-k item tokens for user
tokens, after each user's whole history; ``evaluate`` recomputes a run's test result.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from logging import getLogger
from typing import Any

import torch
from recbole.data import data_preparation
from recbole.data.dataloader import AbstractDataLoader
from recbole.data.dataset import Dataset
from recbole.data.interaction import Interaction
from recbole.utils import ModelType, init_seed

from recbole_rag.checkpoint import check_fits, check_same_items, check_same_split, load_checkpoint
from recbole_rag.config import Config
from recbole_rag.data import load_dataset
from recbole_rag.errors import CheckpointError, ConfigError, DatasetError, is_count
from recbole_rag.regeneration.writer import ADDED_REGEN_KEYS
from recbole_rag.registry import get_trainer, model_class
from recbole_rag.significance import capture_per_user
from recbole_rag.trainer.history_mask import history_masked
from recbole_rag.trainer.raserec_trainer import restore_test_memory

# Settings RecBole's Config derives again (from the model class, the dataset, the machine).
_DERIVED = {
    "gpu_id",  # the machine's, not the run's: set it with config_dict
    "nproc",
    "world_size",
    "offset",
    "ip",
    "port",
    "model",
    "dataset",
    "data_path",
    "MODEL_TYPE",
    "MODEL_INPUT_TYPE",
    "eval_type",
    "device",
    "single_spec",
    "local_rank",
    "valid_neg_sample_args",
    "test_neg_sample_args",
    "eval_neg_sample_args",
}


def saved_config(
    checkpoint: dict[str, Any], path: str | os.PathLike, config_dict: dict[str, Any] | None = None
) -> Config:
    """The Config of the run that wrote ``checkpoint``; ``config_dict`` overrides (e.g. data_path
    where the data has moved, or ``device``)."""
    settings = checkpoint.get("config") if isinstance(checkpoint, dict) else None
    if not isinstance(settings, dict) or not settings.get("model") or not settings.get("dataset"):
        raise CheckpointError(f"'{path}' holds no run settings: it is not a checkpoint saved by recbole-rag.")
    overrides = {k: v for k, v in settings.items() if k not in _DERIVED}
    if settings["model"] == "Regenerator":  # one saved before a recipe key was trained without it
        overrides = {**ADDED_REGEN_KEYS, **overrides}
    negatives = overrides.get("train_neg_sample_args")
    if isinstance(negatives, dict) and negatives.get("distribution") == "none":
        overrides["train_neg_sample_args"] = None  # RecBole's spelled-out form of "no sampling"
    dataset = settings["dataset"]
    data_path = settings.get("data_path")
    if data_path and dataset != "ml-100k":  # RecBole appends the dataset's name to data_path
        overrides["data_path"] = os.path.dirname(os.path.normpath(data_path))
    overrides.update(config_dict or {})
    return Config(settings["model"], dataset, config_dict=overrides)


def load_data_and_model(model_file: str | os.PathLike, config_dict: dict[str, Any] | None = None) -> tuple:
    """(config, model, dataset, train_data, valid_data, test_data) of a saved run, as RecBole's
    ``load_data_and_model`` returns them; the model in eval mode, ready for ``full_sort_topk``."""
    checkpoint = load_checkpoint(model_file)
    config = saved_config(checkpoint, model_file, config_dict)
    init_seed(config["seed"], config["reproducibility"])
    dataset = load_dataset(config)
    check_same_items(checkpoint, dataset, model_file)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    check_same_split(checkpoint, train_data.dataset, model_file)

    init_seed(config["seed"], config["reproducibility"])
    model = model_class(config)(config, train_data.dataset).to(config["device"])
    check_fits(model, checkpoint, model_file)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    if config["model"] == "RaSeRec":
        restore_test_memory(model, config, train_data.dataset, valid_data.dataset)
    model.eval()
    getLogger().info(f"Loaded {config['model']} on {config['dataset']} from {model_file}")
    return config, model, dataset, train_data, valid_data, test_data


def evaluate(
    model_file: str | os.PathLike, config_dict: dict[str, Any] | None = None, per_user: bool = False
) -> dict[str, float] | tuple[dict[str, float], dict[str, Any]]:
    """The test result of a saved run, recomputed by RecBole's evaluator (RaSeRec with the bank
    its test used): what the run reported, from the file alone. With ``per_user``, also each
    test user's values ({"user": tokens, "ndcg@10": array, ...}, recbole_rag.significance)."""
    config, model, dataset, _, _, test_data = load_data_and_model(model_file, config_dict)
    trainer_class = get_trainer(config["MODEL_TYPE"], config["model"])
    if config["eval_mask_history"]:
        trainer_class = history_masked(trainer_class)
    trainer = trainer_class(config, model)
    with capture_per_user(trainer, dataset, {}) as users:
        result = dict(trainer.evaluate(test_data, load_best_model=False, show_progress=config["show_progress"]))
    return (result, users) if per_user else result


def user_ids(dataset: Dataset, users: Sequence[str]) -> list[int]:
    """Internal ids of user tokens; a clear error naming the ones the dataset does not hold."""
    field = dataset.uid_field
    known = dataset.field2token_id[field]
    missing = [u for u in users if str(u) not in known]
    if missing:
        examples = ", ".join(list(dataset.field2id_token[field][1:4]))
        raise DatasetError(
            f"User(s) {', '.join(map(str, missing))} not in dataset {dataset.dataset_name} "
            f"(after its filters); its users look like {examples}."
        )
    return [known[str(u)] for u in users]


def padded(histories: Sequence[torch.Tensor], config: Config) -> Interaction:
    """Item-id sequences (each a 1-d tensor, oldest first) -> the model's input Interaction: the
    last MAX_ITEM_LIST_LENGTH items of each, padded after."""
    max_length = config["MAX_ITEM_LIST_LENGTH"]
    histories = [h[-max_length:] for h in histories]
    return Interaction(
        {
            f"{config['ITEM_ID_FIELD']}_list": torch.stack(
                [torch.nn.functional.pad(h, (0, max_length - len(h))) for h in histories]
            ),
            config["ITEM_LIST_LENGTH_FIELD"]: torch.tensor([len(h) for h in histories]),
        }
    )


def sequences(
    dataset: Dataset, config: Config, histories: Sequence[Sequence[str]], next_items: Sequence[str] | None = None
) -> Interaction:
    """Item-token histories (oldest first) -> the model's input Interaction; with ``next_items``
    (one token per history) <history, next item> pairs, as ``RaSeRec.add_to_memory`` takes them:
    how new interactions enter the memory bank without retraining."""
    field = dataset.iid_field
    known = dataset.field2token_id[field]
    tokens = [t for h in histories for t in h] + list(next_items or [])
    missing = sorted({str(t) for t in tokens if str(t) not in known})
    if missing:
        raise DatasetError(
            f"Item(s) {', '.join(missing[:5])} not in dataset {dataset.dataset_name}: a bank holds "
            "only items the model has embeddings for."
        )
    if not histories or any(not len(h) for h in histories):
        raise DatasetError("Each history needs at least one item.")
    rows = padded([torch.tensor([known[str(t)] for t in h]) for h in histories], config)
    if next_items is not None:
        if len(next_items) != len(histories):
            raise DatasetError(f"{len(histories)} histories but {len(next_items)} next items: give one each.")
        rows.update(Interaction({field: torch.tensor([known[str(t)] for t in next_items])}))
    return rows


@torch.no_grad()
def history_queries(test_data: AbstractDataLoader, uids: Sequence[int]) -> Interaction:
    """The model's input for each user's whole history: the test row's sequence and its target."""
    feat = test_data.dataset.inter_feat
    config = test_data.config
    uid_field, item_field, len_field = (
        config["USER_ID_FIELD"],
        config["ITEM_ID_FIELD"],
        config["ITEM_LIST_LENGTH_FIELD"],
    )
    histories = []
    for uid in uids:
        rows = (feat[uid_field] == uid).nonzero(as_tuple=True)[0]
        if not len(rows):
            raise DatasetError(f"User id {uid} has no test interaction (too short a history to be split).")
        row = feat[rows[-1:]]
        histories.append(torch.cat([row[f"{item_field}_list"][0, : row[len_field][0]], row[item_field]]))
    return padded(histories, config)


@torch.no_grad()
def recommend(
    model_file: str | os.PathLike,
    users: Iterable[str],
    k: int = 10,
    config_dict: dict[str, Any] | None = None,
    exclude_seen: bool = True,
) -> dict[str, list[tuple[str, float]]]:
    """{user token: [(item token, score), ...]} top-k after each user's whole history, leaving
    out the items the user already has (``exclude_seen=False`` keeps them, e.g. for repeat
    purchases; a user who has nearly every item may get fewer than k). A RaSeRec bank also gets
    the test pairs first: by now they are known history (its dynamic memory)."""
    if not is_count(k, 1):
        raise CheckpointError(f"k must be an integer >= 1, got {k!r}.")
    if isinstance(users, str):
        raise ConfigError(f"users must be a list of user tokens, e.g. [{users!r}], not one string.")
    users = list(users)
    if not users:
        raise ConfigError("recommend needs at least one user token.")
    config, model, dataset, _, _, test_data = load_data_and_model(model_file, config_dict)
    if config["MODEL_TYPE"] != ModelType.SEQUENTIAL:
        raise ConfigError(
            f"recommend takes a sequential model's checkpoint; {config['model']} is not one: "
            "use load_data_and_model with RecBole's full_sort_topk."
        )
    if k > dataset.item_num - 1:
        raise CheckpointError(f"k={k} is more than the {dataset.item_num - 1} items of {dataset.dataset_name}.")
    uids = user_ids(dataset, users)
    if config["model"] == "RaSeRec" and model.stage == "raft" and config["memory_update"]:
        model.add_to_memory(test_data.dataset.inter_feat, config["eval_batch_size"])
    queries = history_queries(test_data, uids).to(config["device"])
    scores = model.full_sort_predict(queries).view(len(uids), -1)
    scores[:, 0] = -float("inf")  # padding is not an item
    if exclude_seen:
        for row, items in enumerate(seen_items(dataset, uids)):
            scores[row, items] = -float("inf")
    top_scores, top_items = torch.topk(scores, k)
    tokens = dataset.id2token(dataset.iid_field, top_items.cpu().numpy())
    return {
        user: [
            (item, score) for item, score in zip(tokens[i].tolist(), top_scores[i].tolist()) if score > -float("inf")
        ]
        for i, user in enumerate(users)
    }


def seen_items(dataset: Dataset, uids: Sequence[int]) -> list[torch.Tensor]:
    """Each user's items in the whole dataset (every split), as id tensors."""
    feat = dataset.inter_feat
    return [feat[dataset.iid_field][feat[dataset.uid_field] == uid] for uid in uids]
