"""Shared fixtures: a tiny synthetic sequential dataset in RecBole atomic files, and small,
fast model settings. Every test runs in its own working directory (RecBole writes log/, saved/)."""

import os
import random

import pytest

import recbole_rag  # noqa: F401  (compat shims before RecBole)

TINY = "tiny"


def write_tiny_dataset(folder, name=TINY, n_users=60, n_items=30, seed=0, with_item_file=True):
    """Users walk through items mostly in order (i -> i+1), so next-item models can learn."""
    rng = random.Random(seed)
    path = folder / name
    path.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for user in range(1, n_users + 1):
        item = rng.randrange(1, n_items + 1)
        for t in range(rng.randrange(6, 12)):
            lines.append(f"u{user}\ti{item}\t{t + 1}")
            item = item % n_items + 1 if rng.random() < 0.8 else rng.randrange(1, n_items + 1)
    (path / f"{name}.inter").write_text("\n".join(lines) + "\n")
    if with_item_file:
        rows = ["item_id:token\tprice:float"]
        rows += [f"i{i}\t{'' if i == 3 else float(i)}" for i in range(1, n_items + 1)]
        (path / f"{name}.item").write_text("\n".join(rows) + "\n")
    return folder


SMALL = {
    "epochs": 2,
    "train_batch_size": 64,
    "eval_batch_size": 256,
    "hidden_size": 16,
    "inner_size": 32,
    "n_layers": 1,
    "n_heads": 2,
    "MAX_ITEM_LIST_LENGTH": 10,
    "show_progress": False,
    "state": "ERROR",
    "user_inter_num_interval": "[1,inf)",
    "item_inter_num_interval": "[1,inf)",
}


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def tiny(tmp_path):
    """config_dict for the tiny dataset with small model settings."""
    data_path = write_tiny_dataset(tmp_path / "data")
    return {**SMALL, "data_path": str(data_path), "checkpoint_dir": str(tmp_path / "saved")}


@pytest.fixture(scope="module")
def raserec_run(tmp_path_factory):
    """A RaSeRec run (stage 1 and RAFT) on the tiny dataset: its result dict, checkpoint included."""
    from recbole_rag import run_recbole_rag

    folder = tmp_path_factory.mktemp("raserec")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        config = {
            **SMALL,
            "data_path": str(write_tiny_dataset(folder / "data")),
            "checkpoint_dir": str(folder / "saved"),
            "retrieval_k": 5,
            "epochs": 3,
        }
        return run_recbole_rag("RaSeRec", "tiny", config_dict=config)
    finally:
        os.chdir(cwd)
