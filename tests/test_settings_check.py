"""Every setting out of range, or at odds with another, stops in one line before any data loads
(RecBole's own checks came as tracebacks, some after stage 1 had trained)."""

import warnings

import pytest

from recbole_rag import Config, compare, files, run_recbole_rag
from recbole_rag.cli import main
from recbole_rag.errors import ConfigError
from recbole_rag.quick_start import UnreadSettingWarning
from recbole_rag.settings_check import setting_problems

CASES = [
    ("SASRec", {"learning_rate": 0.0}, "learning_rate must be a number in (0.0, inf)"),
    ("SASRec", {"learning_rate": float("nan")}, "learning_rate must be a number"),
    ("SASRec", {"weight_decay": -0.1}, "weight_decay must be a number in [0.0, inf)"),
    ("SASRec", {"train_batch_size": 0}, "train_batch_size must be an integer >= 1"),
    ("SASRec", {"eval_batch_size": 0}, "eval_batch_size must be an integer >= 1"),
    ("SASRec", {"seed": -1}, "seed must be an integer >= 0 and <= 4294967295"),
    ("SASRec", {"MAX_ITEM_LIST_LENGTH": 0}, "MAX_ITEM_LIST_LENGTH must be an integer >= 1"),
    ("SASRec", {"hidden_size": 30, "n_heads": 4}, "hidden_size (30) must be a multiple of n_heads (4)"),
    ("SASRec", {"n_heads": 0}, "n_heads must be an integer >= 1"),
    ("SASRec", {"hidden_dropout_prob": 1.5}, "hidden_dropout_prob must be a number in [0.0, 1.0)"),
    ("SASRec", {"hidden_act": "softplus"}, "hidden_act must be one of gelu"),
    ("SASRec", {"valid_metric": "NDCG@7"}, "valid_metric must be a measured metric"),
    ("SASRec", {"valid_metric": "Foo@10"}, "valid_metric must be a measured metric"),
    ("SASRec", {"topk": 5}, "valid_metric must be a measured metric"),  # NDCG@10 is not measured at [5]
    ("SASRec", {"metrics": ["Recall", "Foo"]}, "unknown metric(s) ['Foo']"),
    ("SASRec", {"loss_type": "MSE"}, "loss_type must be one of CE, BPR, BCE, got 'MSE'"),
    ("SASRec", {"eval_args": {"split": {"LS": "valid_and_test"}, "order": "RO", "mode": "full"}}, "order must be TO"),
    ("SASRec", {"train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}}, "must be ~ with loss_type CE"),
    ("RaSeRec", {"raft_epochs": 0}, "raft_epochs must be an integer >= 1 or ~"),
    ("RaSeRec", {"raft_dropout": 1.5}, "raft_dropout must be a number in [0.0, 1.0)"),
    ("RaSeRec", {"raft_learning_rate": 0.0}, "raft_learning_rate must be a number in (0.0, inf)"),
    ("RaSeRec", {"memory_nlist": 0}, "memory_nlist must be an integer >= 1 or ~"),
    ("RaSeRec", {"memory_nprobe": -1}, "memory_nprobe must be an integer >= 1 or ~"),
    ("RaSeRec", {"memory_hnsw_m": 0}, "memory_hnsw_m must be an integer >= 2"),
]


@pytest.mark.parametrize("model, settings, words", CASES, ids=[f"{m}-{'-'.join(s)}" for m, s, _ in CASES])
def test_a_bad_setting_stops_before_the_data_loads(tiny, model, settings, words):
    with pytest.raises(ConfigError) as error:
        Config(model, "tiny", config_dict={**tiny, **settings})
    assert words in str(error.value) and "\n" not in str(error.value)


def test_every_problem_is_named_at_once():
    problems = setting_problems({"learning_rate": -1, "epochs": -2, "topk": [10], "metrics": ["NDCG"]})
    assert [p.split(" ")[0] for p in problems] == ["learning_rate", "epochs", "valid_metric"]


def test_the_defaults_and_ranges_edges_pass(tiny):
    Config("RaSeRec", "tiny", config_dict={**tiny, "alpha": 1.0, "raft_dropout": 0.0, "epochs": 0, "memory_nlist": 1})
    Config(
        "SASRec",
        "tiny",
        config_dict={**tiny, "loss_type": "BPR", "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}},
    )


def test_the_command_line_prints_it_as_one_line(tiny, capsys):
    assert main(["--model=SASRec", "--dataset=tiny", f"--data_path={tiny['data_path']}", "--learning_rate=-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Invalid setting: learning_rate must be") and err.count("\n") == 0


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", "c:\\d"])
def test_a_dataset_name_that_is_a_path_is_refused(tiny, name):
    with pytest.raises(ConfigError, match="--dataset must be a plain name"):
        Config("SASRec", name, config_dict=tiny)


@pytest.mark.parametrize("key", ["checkpoint_dir", "memory_path", "memory_uri"])
def test_an_output_path_blocked_by_a_file_stops_before_training(tiny, tmp_path, key):
    (tmp_path / "taken").write_text("")
    value = str(tmp_path / "taken" / "below" / {"memory_path": "bank.npz", "memory_uri": "bank.db"}.get(key, ""))
    with pytest.raises(ConfigError, match="is a file or lies under one"):
        run_recbole_rag("RaSeRec", "tiny", config_dict={**tiny, key: value})
    assert not list(tmp_path.glob("**/*.pth"))  # nothing trained


def test_a_setting_the_model_never_reads_is_said_to_change_nothing(tiny, tmp_path):
    with pytest.warns(
        UnreadSettingWarning, match="alpha, retrieval_k: given, but SASRec never read them, so they changed nothing"
    ):
        result = run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "epochs": 1, "alpha": 0.3, "retrieval_k": 5})
    assert result["unread_settings"] == ["alpha", "retrieval_k"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreadSettingWarning)
        # in a comparison a setting one model reads is the comparison's: no warning
        compare(
            "SASRec,RaSeRec@SASRec", "tiny", config_dict={**tiny, "epochs": 1, "retrieval_k": 5}, out_dir=str(tmp_path)
        )
    with pytest.warns(UnreadSettingWarning, match="^alpha, .*: given, but no compared model read them"):
        compare("GRU4Rec", "tiny", config_dict={**tiny, "epochs": 1, "alpha": 0.1}, out_dir=str(tmp_path))


def test_a_read_only_output_folder_stops_before_training(tiny, tmp_path, monkeypatch):
    def refused(*args, **kwargs):  # what a read-only folder answers (root writes anywhere, so it is simulated)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files.tempfile, "NamedTemporaryFile", refused)
    with pytest.raises(ConfigError, match="checkpoint_dir '.*' cannot be written \\(Permission denied\\)"):
        run_recbole_rag("SASRec", "tiny", config_dict=tiny)


@pytest.mark.parametrize("model", ["FPMC", "SINE", "TransRec"])
def test_pairwise_models_keep_their_sampled_negatives(tiny, model):
    Config(model, "tiny", config_dict=tiny)  # overall.yaml's CE does not forbid what they learn from


@pytest.mark.parametrize(
    "settings",
    [
        {"metrics": ["Recall", "ItemCoverage"], "valid_metric": "ItemCoverage@10"},  # reported per cut-off
        {"eval_step": 0},  # no validation, a checkpoint every epoch
    ],
)
def test_recbole_settings_that_are_valid_pass(tiny, settings):
    Config("SASRec", "tiny", config_dict={**tiny, **settings})


def test_a_bare_per_cutoff_metric_is_refused(tiny):
    with pytest.raises(ConfigError, match="valid_metric must be a measured metric"):
        Config(
            "SASRec",
            "tiny",
            config_dict={**tiny, "metrics": ["Recall", "ItemCoverage"], "valid_metric": "ItemCoverage"},
        )
