import csv
import logging

import pytest
import torch

from recbole_rag import compare, run_recbole_rag
from recbole_rag.cli import main, parse_overrides
from recbole_rag.errors import ConfigError, UnknownModelError

METRICS = ["recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20"]


def test_run_returns_valid_and_test_results_and_a_safe_checkpoint(tiny):
    result = run_recbole_rag("SASRec", "tiny", config_dict=tiny)
    assert list(result["test_result"]) == METRICS
    assert list(result["best_valid_result"]) == METRICS
    assert all(0.0 <= v <= 1.0 for v in result["test_result"].values())
    assert result["test_result"]["recall@20"] >= result["test_result"]["recall@5"]
    checkpoint = torch.load(result["saved_model_file"], weights_only=True)
    assert checkpoint["config"]["model"] == "SASRec"
    assert "item_embedding.weight" in checkpoint["state_dict"]


@pytest.mark.parametrize("model", ["GRU4Rec", "BERT4Rec"])
def test_any_recbole_sequential_model_runs_through_the_same_path(tiny, model):
    result = run_recbole_rag(model, "tiny", config_dict={**tiny, "epochs": 1, "embedding_size": 16})
    assert result["model"] == model and list(result["test_result"]) == METRICS


def test_compare_writes_markdown_and_csv_with_relative_change(tiny, tmp_path):
    _, table = compare("SASRec,DuoRec", "tiny", config_dict={**tiny, "epochs": 1}, out_dir=str(tmp_path / "res"))
    assert "| SASRec |" in table and "| DuoRec |" in table
    assert (tmp_path / "res" / "tiny-compare.md").read_text().count("\n|") >= 3
    with open(tmp_path / "res" / "tiny-compare.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["SASRec", "DuoRec"]
    assert float(rows[0]["ndcg@10_change_pct"]) == 0.0
    sasrec, duorec = float(rows[0]["ndcg@10"]), float(rows[1]["ndcg@10"])
    if sasrec:
        assert float(rows[1]["ndcg@10_change_pct"]) == pytest.approx((duorec - sasrec) / sasrec * 100, abs=0.01)


def test_a_second_compare_into_the_same_folder_keeps_the_first_table(tiny, tmp_path):
    out = str(tmp_path / "res")
    first, _ = compare("SASRec", "tiny", config_dict={**tiny, "epochs": 1}, out_dir=out)
    before = (tmp_path / "res" / "tiny-compare.md").read_text()
    second, _ = compare("GRU4Rec", "tiny", config_dict={**tiny, "epochs": 1, "embedding_size": 16}, out_dir=out)
    assert first[0]["table_file"].endswith("tiny-compare.md") and second[0]["table_file"].endswith("tiny-compare-1.md")
    assert (tmp_path / "res" / "tiny-compare.md").read_text() == before
    assert "| GRU4Rec |" in (tmp_path / "res" / "tiny-compare-1.md").read_text()
    assert (tmp_path / "res" / "tiny-compare-1.csv").is_file()


def test_compare_checks_every_name_before_training(tiny, tmp_path):
    with pytest.raises(UnknownModelError, match="Unknown model 'Nope'"):
        compare(["SASRec", "Nope"], "tiny", config_dict=tiny)
    (tmp_path / "taken").write_text("")
    with pytest.raises(ConfigError, match="'.*taken' is a file"):
        compare(["SASRec"], "tiny", config_dict=tiny, out_dir=str(tmp_path / "taken"))


def test_cli_runs_and_prints_results(tiny, capsys):
    args = [f"--{k}={v}" for k, v in tiny.items()]
    assert main(["--model=SASRec", "--dataset=tiny", "--epochs=1"] + args[1:]) == 0
    assert "test result: recall@5" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model=NoSuchRec", "--dataset=ml-100k"], "Unknown model 'NoSuchRec'"),
        (["--model=SASRec", "--dataset=ml-100k", "--epochs=abc"], "'epochs' expects an integer"),
        (["--model=SASRec", "--dataset=ml-100k", "stray"], "Cannot read argument 'stray'"),
        (["--model=SASRec", "--dataset=nope-dataset"], "Dataset 'nope-dataset' not found"),
        (["--model=SASRec", "--dataset=ml-100k", "--config_files=missing.yaml"], "does not exist"),
    ],
)
def test_cli_bad_input_is_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err  # RecBole's own log of the settings may come first
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last and "Traceback" not in err


def test_overrides_are_typed():
    assert parse_overrides(
        [
            "--epochs=3",
            "--learning_rate=1e-3",
            "--topk=[5,10]",
            "--reproducibility=false",
            "--learner=adam",
            "--train_neg_sample_args=None",
        ]
    ) == {
        "epochs": 3,
        "learning_rate": 0.001,
        "topk": [5, 10],
        "reproducibility": False,
        "learner": "adam",
        "train_neg_sample_args": None,
    }
    with pytest.raises(ConfigError):
        parse_overrides(["-epochs"])


def test_compare_can_start_raft_from_a_backbone_trained_in_the_same_run(tiny, tmp_path):
    results, table = compare(
        "DuoRec,RaSeRec@DuoRec",
        "tiny",
        config_dict={**tiny, "epochs": 1, "retrieval_k": 3},
        out_dir=str(tmp_path / "res"),
    )
    assert [r["model"] for r in results] == ["DuoRec", "RaSeRec@DuoRec"]
    assert results[1]["epochs_run"] == 1  # RAFT only: stage 1 came from DuoRec's checkpoint
    assert "| RaSeRec@DuoRec |" in table


@pytest.mark.parametrize(
    "models, message",
    [
        ("RaSeRec@DuoRec,DuoRec", "list DuoRec before it"),
        ("DuoRec,SASRec@DuoRec", "only RaSeRec can start from a backbone"),
        ("", "at least one model"),
    ],
)
def test_compare_entries_are_checked_first(models, message, tiny):
    with pytest.raises(ConfigError, match=message):
        compare(models, "tiny", config_dict=tiny)


def test_cli_options_are_never_abbreviated():
    from recbole_rag.cli import build_parser

    args, rest = build_parser().parse_known_args(["--data=x", "--mod=GRU4Rec"])
    assert args.dataset == "ml-100k" and args.model is None  # not read as --model (SASRec by default)
    assert rest == ["--data=x", "--mod=GRU4Rec"]


def test_each_run_logs_to_its_own_file_beside_other_handlers(tiny):
    root = logging.getLogger()
    foreign = logging.NullHandler()  # a caller's handler: RecBole's basicConfig alone would then add none
    root.addHandler(foreign)
    try:
        first = run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "epochs": 1, "state": "INFO"})
        second = run_recbole_rag("DuoRec", "tiny", config_dict={**tiny, "epochs": 1, "state": "INFO"})
        assert foreign in root.handlers  # a run never drops a caller's handler
    finally:
        root.removeHandler(foreign)
    texts = {}
    for result, model in ((first, "SASRec"), (second, "DuoRec")):
        with open(result["log_file"], encoding="utf-8") as f:
            texts[model] = f.read()
        assert "epoch 0 evaluating" in texts[model] and f"{model}(" in texts[model]
    assert "DuoRec(" not in texts["SASRec"] and "SASRec(" not in texts["DuoRec"]
