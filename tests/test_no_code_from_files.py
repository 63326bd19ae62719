"""Nothing read from a file runs code: not a checkpoint's saved settings, not RecBole's pickled
dataset and dataloader caches, whether named in a setting or planted where RecBole looks."""

import os
import pickle

import pytest
import torch

from recbole_rag import load_data_and_model, run_recbole_rag
from recbole_rag.cli import main
from recbole_rag.errors import ConfigError


class Planted:
    """Unpickling this creates the file MARKER: proof that code from a file ran."""

    def __reduce__(self):
        return open, ("MARKER", "w")


def plant(path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(Planted(), f)
    return str(path)


@pytest.fixture
def sasrec(tiny):
    return run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "epochs": 1})


def test_a_checkpoint_naming_a_model_whose_setting_recbole_evaluates_is_refused(sasrec, tmp_path, capsys):
    checkpoint = torch.load(sasrec["saved_model_file"], weights_only=True)
    checkpoint["config"]["model"] = "KD_DAGFM"  # RecBole's KD_DAGFM eval()s its teacher setting
    checkpoint["config"]["teacher"] = "open('MARKER', 'w') and CrossNet"
    crafted = str(tmp_path / "crafted.pth")
    torch.save(checkpoint, crafted)
    with pytest.raises(ConfigError, match="teacher must be one of CrossNet, CIN"):
        load_data_and_model(crafted)
    assert main(["evaluate", f"--checkpoint={crafted}"]) == 2
    assert "RecBole evaluates it as code" in capsys.readouterr().err
    assert not os.path.exists("MARKER")


@pytest.mark.parametrize("key", ["dataset_save_path", "dataloaders_save_path"])
def test_a_setting_that_names_a_pickle_is_refused(tiny, tmp_path, key):
    with pytest.raises(ConfigError, match=f"{key} points RecBole at a pickle"):
        run_recbole_rag("SASRec", "tiny", config_dict={**tiny, key: plant(tmp_path / "cache.pth")})
    assert not os.path.exists("MARKER")


@pytest.mark.parametrize("switch", ["save_dataset", "save_dataloaders"])
def test_writing_recboles_pickle_caches_is_refused(tiny, switch):
    with pytest.raises(ConfigError, match=f"{switch}: True writes a RecBole pickle cache"):
        run_recbole_rag("SASRec", "tiny", config_dict={**tiny, switch: True})


def test_pickles_planted_where_recbole_looks_are_never_read(tiny):
    folder = tiny["checkpoint_dir"]
    plant(os.path.join(folder, "tiny-SequentialDataset.pth"))
    plant(os.path.join(folder, "tiny-for-SASRec-dataloader.pth"))
    result = run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "epochs": 1})
    assert not os.path.exists("MARKER")
    assert 0 <= result["test_result"]["ndcg@10"] <= 1  # the data came from the atomic files
    _, _, dataset, *_ = load_data_and_model(result["saved_model_file"])
    assert not os.path.exists("MARKER") and dataset.inter_num > 0
