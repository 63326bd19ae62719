"""DR4SR+'s dataset personaliser (recbole_rag/trainer/personaliser.py) around plain sequential models."""

import pytest
import torch
from recbole.data import data_preparation

from recbole_rag import Config, get_model, get_trainer, run_recbole_rag
from recbole_rag.data import load_dataset
from recbole_rag.errors import ConfigError
from recbole_rag.trainer import load_checkpoint
from recbole_rag.trainer.personaliser import personalised

FAST = {"personalise_warmup_epochs": 1, "personalise_interval": 2}


def _trainer(tiny, model="SASRec", **overrides):
    config = Config(model, "tiny", ["dr4sr-plus"], {**tiny, **FAST, **overrides})
    train, _, _ = data_preparation(config, load_dataset(config))
    net = get_model(model)(config, train.dataset)
    trainer = personalised(get_trainer(config["MODEL_TYPE"], model))(config, net)
    return trainer, train


def test_a_personalised_run_trains_the_scorer_and_saves_a_plain_model(tiny):
    result = run_recbole_rag("SASRec", "tiny", ["dr4sr-plus"], {**tiny, **FAST, "epochs": 3})
    checkpoint = load_checkpoint(result["saved_model_file"])
    assert checkpoint["personaliser"]["meta_steps_done"] > 0
    plain = run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "epochs": 1})
    assert set(checkpoint["state_dict"]) == set(load_checkpoint(plain["saved_model_file"])["state_dict"])


@pytest.mark.parametrize("model", ["SASRec", "GRU4Rec", "DuoRec"])
def test_a_meta_step_moves_the_scorer_and_nothing_else(tiny, model):
    trainer, train = _trainer(tiny, model)
    trainer.pattern_user = torch.zeros(train.dataset.user_num, dtype=torch.bool)  # fit sets both
    trainer.train_rows = train.dataset.inter_feat
    scorer = [p.detach().clone() for p in trainer.scorer.parameters()]
    weights = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.meta_step()
    assert any(not torch.equal(a, b) for a, b in zip(scorer, trainer.scorer.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(weights, trainer.model.parameters()))
    loss = trainer.weighted_loss(next(iter(train)))
    loss.backward()
    assert trainer.model.item_embedding.weight.grad.abs().sum() > 0


def test_pattern_rows_keep_weight_one(tiny):
    trainer, train = _trainer(tiny)
    batch = next(iter(train))
    trainer.pattern_user = torch.zeros(train.dataset.user_num, dtype=torch.bool)
    trainer.pattern_user[batch["user_id"][:3]] = True
    representation = torch.randn(len(batch), trainer.model.item_embedding.weight.shape[1])
    weights = trainer.row_weights(batch, representation)
    fixed = trainer.pattern_user[batch["user_id"]]
    assert torch.all(weights[fixed] == 1) and torch.all((weights[~fixed] > 0) & (weights[~fixed] < 1))


def test_resuming_restores_the_scorer(tiny, tmp_path):
    result = run_recbole_rag("SASRec", "tiny", ["dr4sr-plus"], {**tiny, **FAST, "epochs": 3})
    saved = load_checkpoint(result["saved_model_file"])["personaliser"]
    trainer, _ = _trainer(tiny)
    trainer.resume_checkpoint(result["saved_model_file"])
    for name, value in trainer.scorer.state_dict().items():
        assert torch.equal(value, saved["scorer"][name])
    assert trainer.steps_after_warmup == saved["steps_after_warmup"] > 0


@pytest.mark.parametrize(
    "model, overrides, message",
    [
        ("RaSeRec", {}, "RaSeRec with loss_type CE is not one"),
        ("Caser", {}, "Caser with loss_type CE is not one"),
        ("SASRec", {"loss_type": "BPR", "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}}, "BPR"),
        ("SASRec", {"personalise_interval": None}, "personalise needs personalise_interval: add --config_files"),
    ],
)
def test_what_the_personaliser_cannot_wrap_stops_before_training(tiny, model, overrides, message):
    with pytest.raises(ConfigError, match=message):
        run_recbole_rag(model, "tiny", ["dr4sr-plus"], {**tiny, **overrides})
