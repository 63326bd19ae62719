"""DR4SR+'s dataset personaliser (recbole_rag/trainer/personaliser.py) around plain sequential models."""

import logging
import re

import numpy as np
import pytest
import torch
from recbole.data import data_preparation

from bench.diagnostics import personaliser_weights
from recbole_rag import Config, get_model, get_trainer, run_recbole_rag
from recbole_rag.data import load_dataset
from recbole_rag.errors import ConfigError
from recbole_rag.trainer import load_checkpoint
from recbole_rag.trainer.personaliser import in_rows, personalised

FAST = {"personalise_warmup_epochs": 1, "personalise_interval": 2, "personalise_unit": "rows"}


def _trainer(tiny, model="SASRec", **overrides):
    config = Config(model, "tiny", ["dr4sr-plus"], {**tiny, **FAST, **overrides})
    train, _, _ = data_preparation(config, load_dataset(config))
    net = get_model(model)(config, train.dataset)
    trainer = personalised(get_trainer(config["MODEL_TYPE"], model))(config, net)
    return trainer, train


def test_a_personalised_run_trains_the_scorer_and_saves_a_plain_model(tiny, caplog):
    caplog.set_level(logging.INFO)
    result = run_recbole_rag("SASRec", "tiny", ["dr4sr-plus"], {**tiny, **FAST, "epochs": 3, "state": "INFO"})
    checkpoint = load_checkpoint(result["saved_model_file"])
    assert checkpoint["personaliser"]["meta_steps_done"] > 0
    # each weighted epoch (1 and 2, after one warm-up epoch) logs the weights it gave, all in (0, 1)
    logged = re.findall(r"DR4SR\+ epoch (\d): row weights mean ([\d.]+), std ([\d.]+) over (\d+) rows", caplog.text)
    assert [epoch for epoch, *_ in logged] == ["1", "2"]
    assert all(0 < float(mean) < 1 and float(std) > 0 and int(n) > 0 for _, mean, std, n in logged)
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
    loss, _ = trainer.weighted_loss(next(iter(train)))
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


def test_the_reference_sequence_batches_become_rows_and_steps():
    # 30 batches of 256 sequences of 2.5 rows each = 19,200 rows = 75 steps of 256; 640 rows per meta batch
    assert in_rows(30, 256, 2.5, 256) == (75, 640)
    assert in_rows(30, 256, 1.0, 512) == (15, 256)
    assert in_rows(1, 1, 0.1, 256) == (1, 1)


def test_sequence_units_follow_the_training_rows_per_user(tiny):
    trainer, train = _trainer(tiny, personalise_unit="sequences", personalise_interval=20, personalise_batch_size=8)
    trainer.config["epochs"] = 0
    trainer.fit(train, show_progress=False)
    rows = train.dataset.inter_feat
    per_user = len(rows) / len(set(rows["user_id"].tolist()))
    assert per_user > 1.5  # tiny's users have several rows each, so the conversion shows
    assert trainer.meta_batch_size == round(8 * per_user) and len(trainer._random_batch()) == trainer.meta_batch_size
    assert trainer.interval == round(20 * 8 * per_user / train.batch_size) > 1


@pytest.mark.parametrize(
    "model, overrides, message",
    [
        ("RaSeRec", {}, "RaSeRec with loss_type CE is not one"),
        ("Caser", {}, "Caser with loss_type CE is not one"),
        ("SASRec", {"loss_type": "BPR", "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}}, "BPR"),
        ("SASRec", {"personalise_interval": None}, "personalise needs personalise_interval: add --config_files"),
        ("SASRec", {"personalise_unit": "users"}, "personalise_unit must be one of sequences, rows, got 'users'"),
        ("SASRec", {"personalise_batch_size": 0}, "personalise_batch_size must be >= 1, got 0"),
    ],
)
def test_what_the_personaliser_cannot_wrap_stops_before_training(tiny, model, overrides, message):
    with pytest.raises(ConfigError, match=message):
        run_recbole_rag(model, "tiny", ["dr4sr-plus"], {**tiny, **overrides})


def test_the_weights_probe_reads_the_saved_scorer_over_the_training_rows(tiny, tmp_path, capsys):
    result = run_recbole_rag("SASRec", "tiny", ["dr4sr-plus"], {**tiny, **FAST, "epochs": 2})
    checkpoint = load_checkpoint(result["saved_model_file"])
    tau = checkpoint["config"]["personalise_tau"]
    checkpoint["personaliser"]["scorer"]["mlp.2.bias"] = torch.tensor([2.0 * tau, 0.0])  # every row ~0.88
    leaning = tmp_path / "leaning.pth"
    torch.save(checkpoint, leaning)
    assert personaliser_weights.main([f"--checkpoint={leaning}"]) == 0
    stats = personaliser_weights.learned_weights(str(leaning), {})
    config = Config("SASRec", "tiny", config_dict=tiny)
    train, _, _ = data_preparation(config, load_dataset(config))
    assert stats["rows"] == len(train.dataset.inter_feat)  # no mined-pattern users in tiny: every row
    assert 0.85 < stats["learned"].mean() < 0.9 and not np.allclose(stats["learned"], stats["noisy"])
    assert "scorer's weights, no noise: mean 0.8" in capsys.readouterr().out
    plain = run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "epochs": 1})
    assert personaliser_weights.main([f"--checkpoint={plain['saved_model_file']}"]) == 2
    assert "holds no DR4SR+ scorer: it was not saved by a personalise run" in capsys.readouterr().err
