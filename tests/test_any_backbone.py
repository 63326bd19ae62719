"""RaSeRec's RAFT on any RecBole sequential model whose scores are its user vector . item table
(``--backbone=GRU4Rec``, ``RaSeRec@GRU4Rec`` in a comparison), and the one-line refusal of the rest."""

import csv

import pytest
import torch
from recbole.model.sequential_recommender import GRU4Rec

from bench import any_backbone
from recbole_rag import Config, compare, run_recbole_rag
from recbole_rag.errors import CheckpointError, ConfigError, RecBoleRagError
from recbole_rag.inference import evaluate, load_data_and_model
from recbole_rag.model.sequential_recommender.raserec import on_backbone
from recbole_rag.registry import model_class

RAFT = {"retrieval_k": 3, "raft_epochs": 1}
WRAPPED = ["GRU4Rec", "NARM", "STAMP", "SASRec", "LightSANs", "SRGNN", "GCSAN", "FEARec"]


def _backbone_run(tiny, name):
    settings = {**tiny, "epochs": 1, "n_layers": 2}  # FEARec needs two layers or more
    return settings, run_recbole_rag(name, "tiny", config_dict=settings)


@pytest.mark.parametrize("name", WRAPPED)
def test_raft_with_alpha_one_gives_the_backbones_own_metrics_exactly(tiny, name):
    settings, backbone = _backbone_run(tiny, name)
    raft = {**settings, **RAFT, "backbone": name, "pretrained_path": backbone["saved_model_file"], "alpha": 1.0}
    result = run_recbole_rag("RaSeRec", "tiny", config_dict=raft)
    assert result["test_result"] == backbone["test_result"]
    assert result["epochs_run"] >= 1  # a RAFT epoch ran, over the backbone's bank
    checkpoint = torch.load(result["saved_model_file"], weights_only=True)
    assert checkpoint["config"]["backbone"] == name and any(
        k.startswith("retrieval.") for k in checkpoint["state_dict"]
    )


def test_a_backbone_trained_in_the_same_command_then_raft_saves_a_model_that_loads_alone(tiny):
    result = run_recbole_rag("RaSeRec", "tiny", config_dict={**tiny, **RAFT, "backbone": "GRU4Rec", "epochs": 1})
    config, model, *_ = load_data_and_model(result["saved_model_file"])
    assert type(model).backbone_name == "GRU4Rec" and isinstance(model, GRU4Rec) and model.stage == "raft"
    assert config["embedding_size"] == 64 == model.memory_dim  # RecBole's GRU4Rec defaults load for its backbone
    assert model.retrieval_k == 3
    assert evaluate(result["saved_model_file"]) == result["test_result"]


def test_a_backbone_named_in_a_yaml_file_loads_that_models_class_and_defaults(tiny, tmp_path):
    yaml_file = tmp_path / "narm.yaml"
    yaml_file.write_text("backbone: NARM\n")
    config = Config("RaSeRec", "tiny", [str(yaml_file)], {k: v for k, v in tiny.items() if k != "hidden_size"})
    assert config["backbone"] == "NARM" and config["model"] == "RaSeRec"
    assert model_class(config).__name__ == "RaSeRec" and model_class(config).backbone_name == "NARM"
    assert config["hidden_size"] == 128 and config["embedding_size"] == 64  # RecBole's NARM.yaml
    assert Config("RaSeRec", "tiny", config_dict=tiny)["backbone"] == "DuoRec"  # the paper's, by default


def test_raserec_at_a_recbole_model_in_a_comparison_wraps_that_model(tiny, tmp_path):
    results, table = compare(
        "GRU4Rec,RaSeRec@GRU4Rec", "tiny", config_dict={**tiny, **RAFT, "epochs": 1}, out_dir=str(tmp_path)
    )
    assert [r["model"] for r in results] == ["GRU4Rec", "RaSeRec@GRU4Rec"]
    assert torch.load(results[1]["saved_model_file"], weights_only=True)["config"]["backbone"] == "GRU4Rec"
    assert "RaSeRec@GRU4Rec" in table


class ShiftedGRU4Rec(GRU4Rec):
    """A model whose full ranking adds a term to user vector . item table."""

    def full_sort_predict(self, interaction):
        return super().full_sort_predict(interaction) + torch.arange(self.n_items, device=self.device)


@pytest.mark.parametrize(
    "backbone,match",
    [
        ("CORE", r"forward\(item_seq, item_seq_len\) gives user vectors; CORE.forward takes \(item_seq\)\.$"),
        ("BERT4Rec", r"BERT4Rec.forward takes \(item_seq\)\.$"),
        ("Caser", r"Caser.forward takes \(user, item_seq\)\.$"),
        ("RepeatNet", r"scores with the backbone's item_embedding table; RepeatNet has none\.$"),
        ("SRACL", r"RaSeRec's backbone is DuoRec or a RecBole sequential model \(GRU4Rec, NARM, \.\.\.\), got 'SRACL'"),
        ("BPR", r"RaSeRec's backbone must be a sequential model; BPR is not one\.$"),
        ("Nope", r"Unknown model 'Nope'"),
    ],
)
def test_a_backbone_raft_cannot_wrap_is_refused_in_one_line(tiny, backbone, match):
    with pytest.raises(RecBoleRagError, match=match) as caught:
        run_recbole_rag("RaSeRec", "tiny", config_dict={**tiny, **RAFT, "backbone": backbone})
    assert "\n" not in str(caught.value)


def test_a_backbone_that_scores_otherwise_is_refused_before_stage_1(tiny, monkeypatch):
    shifted = on_backbone(ShiftedGRU4Rec)
    monkeypatch.setattr("recbole_rag.quick_start.model_class", lambda config: shifted)
    trained = []
    monkeypatch.setattr(GRU4Rec, "calculate_loss", lambda *a: trained.append(1))
    with pytest.raises(ConfigError, match=r"ShiftedGRU4Rec scores otherwise \(its full ranking differs by up to"):
        run_recbole_rag("RaSeRec", "tiny", config_dict={**tiny, **RAFT, "backbone": "GRU4Rec"})
    assert not trained


def test_another_models_checkpoint_is_refused_as_the_backbone(tiny):
    settings, narm = _backbone_run(tiny, "NARM")
    with pytest.raises(CheckpointError, match="holds a NARM model; this RaSeRec's backbone is GRU4Rec"):
        run_recbole_rag(
            "RaSeRec",
            "tiny",
            config_dict={**settings, **RAFT, "backbone": "GRU4Rec", "pretrained_path": narm["saved_model_file"]},
        )
    with pytest.raises(
        CheckpointError, match=r"holds a NARM model; .*--backbone=<its name> runs RaSeRec's RAFT on that model\)\.$"
    ):
        run_recbole_rag(
            "RaSeRec", "tiny", config_dict={**settings, **RAFT, "pretrained_path": narm["saved_model_file"]}
        )


def test_the_any_backbone_table_tests_each_raft_row_against_its_backbone(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["--dataset=tiny", f"--data_path={tiny['data_path']}", f"--out_dir={tmp_path / 'out'}", "--run"]
    small = [f"--{k}={v}" for k, v in tiny.items() if k != "data_path"]
    assert any_backbone.main(argv + small + ["--epochs=1", "--raft_epochs=1", "--n_layers=2", "--retrieval_k=3"]) == 0
    text = (tmp_path / "out" / "tiny-any-backbone.md").read_text()
    with open(tmp_path / "out" / "tiny-any-backbone.csv", newline="") as f:
        rows = {row["model"]: row for row in csv.DictReader(f)}
    assert set(rows) == {name for name, _, _ in any_backbone.TABLE}
    for name in any_backbone.BACKBONES:
        assert rows[f"RaSeRec@{name}"]["base"] == name and rows[f"RaSeRec@{name}"]["p_value"] != ""
        assert f"| Improvement over {name} |" in text
    assert rows["GRU4Rec"]["base"] == ""


def test_the_any_backbone_table_needs_a_dataset(capsys):
    assert any_backbone.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--dataset" in err and err.count("\n") == 1
