"""loss_type BCE (recbole_rag.model.bce) and the dr4sr-reference preset that trains with it."""

import pytest
import torch
import torch.nn.functional as F
from recbole.data import data_preparation

from recbole_rag import Config, run_recbole_rag
from recbole_rag.data import load_dataset
from recbole_rag.errors import ConfigError
from recbole_rag.inference import evaluate
from recbole_rag.registry import model_class

ONE_NEGATIVE = {"loss_type": "BCE", "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}}


@pytest.mark.parametrize("name", ["SASRec", "GRU4Rec"])
def test_bce_is_minus_log_sigmoid_of_the_positive_plus_softplus_of_the_negative(tiny, name):
    config = Config(name, "tiny", config_dict={**tiny, **ONE_NEGATIVE})
    train_data, _, _ = data_preparation(config, load_dataset(config))
    model = model_class(config)(config, train_data.dataset)
    assert type(model).__name__ == name and model.loss_type == "BCE" and config["loss_type"] == "BCE"
    batch = next(iter(train_data))
    model.eval()  # no dropout: the same vectors twice
    with torch.no_grad():
        user = model.forward(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
        pos = (user * model.item_embedding(batch[model.POS_ITEM_ID])).sum(-1)
        neg = (user * model.item_embedding(batch[model.NEG_ITEM_ID])).sum(-1)
        expected = F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos)) + F.binary_cross_entropy_with_logits(
            neg, torch.zeros_like(neg)
        )
        assert torch.allclose(model.calculate_loss(batch), expected)
    bpr = model_class(Config(name, "tiny", config_dict={**tiny, **ONE_NEGATIVE, "loss_type": "BPR"}))
    assert bpr is not type(model) and bpr.__module__.startswith("recbole.")  # BPR stays RecBole's own class


def test_a_bce_run_trains_saves_and_evaluates_as_it_reported(tiny):
    result = run_recbole_rag("SASRec", "tiny", config_dict={**tiny, **ONE_NEGATIVE, "epochs": 1})
    assert evaluate(result["saved_model_file"]) == result["test_result"]


def test_the_dr4sr_reference_preset_trains_sasrec_under_that_protocol(tiny):
    settings = {k: v for k, v in tiny.items() if k != "inner_size"}  # the preset's FFN, not the tiny one
    result = run_recbole_rag("SASRec", "tiny", ["dr4sr-reference"], {**settings, "epochs": 1})
    config = torch.load(result["saved_model_file"], weights_only=True)["config"]
    assert config["loss_type"] == "BCE" and config["train_neg_sample_args"]["sample_num"] == 1
    assert config["eval_mask_history"] is True and config["valid_metric"] == "NDCG@20"
    assert config["inner_size"] == 128 and config["stopping_step"] == 20


def test_bce_where_it_does_not_fit_is_a_one_line_error(tiny):
    with pytest.raises(ConfigError, match="loss_type BCE trains on sampled negatives: set train_neg_sample_args"):
        run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "loss_type": "BCE", "train_neg_sample_args": None})
    # left unset, BCE samples as RecBole's BPR does: one uniform negative per row
    assert (
        Config("SASRec", "tiny", config_dict={**tiny, "loss_type": "BCE"})["train_neg_sample_args"]["sample_num"] == 1
    )
    with pytest.raises(ConfigError, match=r"loss_type BCE is for SASRec, GRU4Rec \(.*\), not NARM\.$"):
        run_recbole_rag("NARM", "tiny", config_dict={**tiny, **ONE_NEGATIVE})
    with pytest.raises(ConfigError, match="not DuoRec"):
        run_recbole_rag("DuoRec", "tiny", config_dict={**tiny, **ONE_NEGATIVE})
