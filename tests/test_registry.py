import pytest
from recbole.model.sequential_recommender import SASRec
from recbole.trainer import Trainer as RecBoleTrainer
from recbole.utils import ModelType

from recbole_rag import get_model, get_trainer, known_models
from recbole_rag.errors import UnknownModelError
from recbole_rag.model.sequential_recommender.duorec import DuoRec
from recbole_rag.trainer import SafeCheckpointMixin


def test_plugin_models_first_then_recbole():
    assert get_model("DuoRec") is DuoRec
    assert get_model("SASRec") is SASRec
    assert {"DuoRec", "SASRec", "GRU4Rec", "BERT4Rec"} <= set(known_models())


def test_unknown_model_lists_known_ones():
    with pytest.raises(UnknownModelError) as err:
        get_model("NoSuchRec")
    assert "NoSuchRec" in str(err.value) and "SASRec" in str(err.value) and "DuoRec" in str(err.value)


def test_wrong_case_suggests_the_right_name():
    with pytest.raises(UnknownModelError, match="Did you mean SASRec"):
        get_model("sasrec")


def test_trainers_save_plain_checkpoints():
    trainer = get_trainer(ModelType.SEQUENTIAL, "SASRec")
    assert issubclass(trainer, RecBoleTrainer) and issubclass(trainer, SafeCheckpointMixin)
    assert get_trainer(ModelType.SEQUENTIAL, "GRU4Rec") is trainer
