import pytest

from recbole_rag import Config
from recbole_rag.config import properties_dir
from recbole_rag.errors import ConfigError


def test_properties_layer_overall_then_model_then_dataset(tiny):
    config = Config("DuoRec", "tiny", config_dict=tiny)
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"}
    assert config["eval_args"]["order"] == "TO"
    assert config["eval_args"]["mode"] == {"valid": "full", "test": "full"}
    assert config["topk"] == [5, 10, 20]
    assert config["valid_metric"] == "NDCG@10"
    assert config["loss_type"] == "CE"
    assert config["train_neg_sample_args"]["distribution"] == "none"  # no training negatives
    assert config["contrast"] == "us_x"  # properties/model/DuoRec.yaml
    assert (properties_dir() / "dataset" / "amazon-beauty.yaml").is_file()


def test_user_files_override_properties_and_command_line_overrides_files(tiny, tmp_path):
    user_file = tmp_path / "mine.yaml"
    user_file.write_text("learning_rate: 0.01\nlmd_sem: 0.3\n")
    config = Config("DuoRec", "tiny", [str(user_file)], {**tiny, "lmd_sem": 0.5})
    assert config["learning_rate"] == 0.01
    assert config["lmd_sem"] == 0.5


def test_dataset_properties_load_fields_that_exist_with_and_without_rating():
    config = Config("SASRec", "amazon-beauty")
    assert config["load_col"] == {"inter": ["user_id", "item_id", "timestamp"]}
    assert config["user_inter_num_interval"] == "[5,inf)"


def test_malformed_yaml_names_the_file(tiny, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1, 2\nlr: 0.1\n")
    with pytest.raises(ConfigError, match="bad.yaml.*not valid YAML"):
        Config("SASRec", "tiny", [str(bad)], tiny)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfeepochs: 1\n")
    with pytest.raises(ConfigError, match="binary.yaml' is not UTF-8 text"):
        Config("SASRec", "tiny", [str(binary)], tiny)


def test_yaml_that_is_not_a_mapping_is_refused(tiny, tmp_path):
    listy = tmp_path / "list.yaml"
    listy.write_text("- epochs\n- 3\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        Config("SASRec", "tiny", [str(listy)], tiny)


def test_missing_config_file(tiny):
    with pytest.raises(ConfigError, match=r"does not exist and is no shipped preset \(presets: .*sracl-authors"):
        Config("SASRec", "tiny", ["nope.yaml"], tiny)


def test_a_shipped_preset_is_named_like_a_config_file_and_the_command_line_still_wins(tiny):
    settings = {k: v for k, v in tiny.items() if k != "MAX_ITEM_LIST_LENGTH"}
    config = Config("SRACL", "tiny", ["sracl-authors"], {**settings, "tau": 0.5})
    assert config["cross_view"] == "encode" and config["cross_retrieval"] == "prefix"
    assert config["MAX_ITEM_LIST_LENGTH"] == 20 and config["intra_weight"] == 0.1 and config["sim"] == "dot"
    assert config["tau"] == 0.5


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("epochs", "abc", "an integer"),
        ("epochs", 2.5, "an integer"),
        ("learning_rate", "fast", "a number"),
        ("reproducibility", 3, "true or false"),
        ("eval_args", "loo", "a mapping"),
    ],
)
def test_override_of_the_wrong_type_is_refused(tiny, key, value, expected):
    with pytest.raises(ConfigError, match=f"'{key}' expects {expected}"):
        Config("SASRec", "tiny", config_dict={**tiny, key: value})


def test_missing_model_or_dataset():
    with pytest.raises(ConfigError, match="No dataset"):
        Config("SASRec", None)
    with pytest.raises(ConfigError, match="No model"):
        Config(None, "ml-100k")


def test_a_models_properties_load_along_its_class_chain(tiny, tmp_path, monkeypatch):
    from pathlib import Path

    from recbole_rag import config as config_module

    names = [Path(p).name for p in config_module.property_files("RaSeRec", "amazon-beauty")]
    assert names == ["overall.yaml", "EncoderRecommender.yaml", "DuoRec.yaml", "RaSeRec.yaml", "amazon-beauty.yaml"]
    assert [Path(p).name for p in config_module.property_files("SASRec", "tiny")] == ["overall.yaml"]
    # a DuoRec default is RaSeRec's too, unless RaSeRec's own file sets it
    root = tmp_path / "props"
    (root / "model").mkdir(parents=True)
    (root / "overall.yaml").write_text("epochs: 3\nloss_type: CE\ntrain_neg_sample_args: ~\n")
    (root / "model" / "DuoRec.yaml").write_text("tau: 0.7\nlmd: 0.2\n")
    (root / "model" / "RaSeRec.yaml").write_text("lmd: 0.3\n")
    monkeypatch.setattr(config_module, "properties_dir", lambda: root)
    config = Config("RaSeRec", "tiny", config_dict=tiny)
    assert (config["tau"], config["lmd"], config["epochs"]) == (0.7, 0.3, tiny["epochs"])
