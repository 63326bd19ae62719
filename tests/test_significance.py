"""Chance as a feature: per-user test values that add up to RecBole's metrics, paired tests that
find a real difference and none where there is none, on the command line and in compare."""

import csv

import numpy as np
import pytest
import torch

from conftest import SMALL, write_tiny_dataset
from recbole_rag import compare, run_recbole_rag
from recbole_rag.cli import main
from recbole_rag.errors import ConfigError
from recbole_rag.inference import evaluate
from recbole_rag.significance import (
    USER,
    compare_runs,
    load_per_user,
    mean_over_runs,
    paired_test,
    save_per_user,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """SASRec on a tiny set with 300 users (enough for a damaged copy to be told apart) and the
    same checkpoint with its item table shuffled."""
    root = tmp_path_factory.mktemp("significance")
    config = {**SMALL, "data_path": str(write_tiny_dataset(root / "data", n_users=300)), "epochs": 3}
    result = run_recbole_rag(
        "SASRec", "tiny", config_dict={**config, "checkpoint_dir": str(root / "saved")}, per_user=True
    )
    checkpoint = torch.load(result["saved_model_file"], weights_only=True)
    table = checkpoint["state_dict"]["item_embedding.weight"]
    order = torch.randperm(len(table) - 1, generator=torch.Generator().manual_seed(0)) + 1
    table[1:] = table[order]  # every item scored as another: a damaged copy
    damaged = str(root / "damaged.pth")
    torch.save(checkpoint, damaged)
    return config, result, damaged


def test_per_user_values_average_to_recboles_metrics(trained):
    _, result, _ = trained
    per_user = result["per_user"]
    assert len(per_user[USER]) == 300 and len(set(per_user[USER])) == 300
    for metric, value in result["test_result"].items():
        assert np.mean(per_user[metric]) == pytest.approx(value, abs=5e-5)


def test_a_checkpoint_reevaluated_gives_the_same_per_user_values(trained):
    _, result, _ = trained
    again, per_user = evaluate(result["saved_model_file"], per_user=True)
    assert again == result["test_result"]
    for metric in result["test_result"]:
        np.testing.assert_array_equal(per_user[metric], result["per_user"][metric])
    tests = compare_runs(result["per_user"], per_user)
    assert all(t.identical and t.p_t is None and t.difference == 0 for t in tests)


def test_a_damaged_copy_is_worse_beyond_chance(trained, capsys):
    _, result, damaged = trained
    assert main(["significance", f"--checkpoints={result['saved_model_file']},{damaged}"]) == 0
    out = capsys.readouterr().out
    assert "B against A" in out
    _, worse = evaluate(damaged, per_user=True)
    for test in compare_runs(result["per_user"], worse):
        assert test.difference < 0 and test.ci_high < 0
        assert test.p_t < 1e-6 and test.p_wilcoxon < 1e-6


def test_the_same_checkpoint_twice_is_said_to_be_identical(trained, capsys):
    _, result, _ = trained
    assert main(["significance", f"--checkpoints={result['saved_model_file']},{result['saved_model_file']}"]) == 0
    assert "identical on all 300 test users" in capsys.readouterr().out


def test_two_seeds_of_one_model_differ_by_no_more_than_chance(trained):
    config, result, _ = trained
    other = run_recbole_rag("SASRec", "tiny", config_dict={**config, "seed": 7}, per_user=True)
    for test in compare_runs(result["per_user"], other["per_user"]):
        assert not test.identical
        assert test.ci_low < 0 < test.ci_high and test.p_t > 0.05


def test_the_bootstrap_interval_holds_zero_on_most_draws_of_equal_runs():
    rng = np.random.default_rng(0)
    covered = 0
    for draw in range(200):
        a, b = rng.random(300) < 0.3, rng.random(300) < 0.3  # two runs hitting as often, by chance
        test = paired_test(a.astype(float), b.astype(float), "recall@10", resamples=400, seed=draw)
        covered += test.ci_low <= 0 <= test.ci_high
    assert 0.9 <= covered / 200 <= 0.99  # a 95% interval


def test_a_shift_in_one_direction_is_signed_and_significant():
    rng = np.random.default_rng(1)
    a = rng.random(2000)
    test = paired_test(a, a + 0.01 + rng.normal(0, 0.01, 2000), "ndcg@10")
    assert test.difference > 0 and test.ci_low > 0 and test.p_t < 1e-6 and test.p_wilcoxon < 1e-6


def test_per_user_files_round_trip_and_pair_by_user_token(tmp_path):
    a = {USER: np.array(["u1", "u2", "u3"]), "ndcg@10": np.array([0.5, 0.0, 1.0])}
    b = {USER: np.array(["u3", "u1", "u2"]), "ndcg@10": np.array([1.0, 0.5, 0.0])}  # same values, other order
    save_per_user(tmp_path / "a.csv.gz", a)
    back = load_per_user(tmp_path / "a.csv.gz")
    np.testing.assert_array_equal(back["ndcg@10"], a["ndcg@10"])
    assert compare_runs(back, b, ["ndcg@10"])[0].identical
    np.testing.assert_array_equal(mean_over_runs([a, b])["ndcg@10"], a["ndcg@10"])


def test_runs_on_other_users_are_refused():
    a = {USER: np.array(["u1", "u2"]), "ndcg@10": np.zeros(2)}
    b = {USER: np.array(["u1", "u9"]), "ndcg@10": np.zeros(2)}
    with pytest.raises(ConfigError, match="different users"):
        compare_runs(a, b, ["ndcg@10"])
    with pytest.raises(ConfigError, match="ndcg@7 was not measured"):
        compare_runs(a, a, ["ndcg@7"])


def test_compare_over_seeds_gives_mean_std_and_per_seed_and_pooled_tests(trained, tmp_path):
    config, _, _ = trained
    out = tmp_path / "res"
    results, table = compare(
        "GRU4Rec,SASRec",
        "tiny",
        config_dict={**config, "epochs": 1, "embedding_size": 16},
        out_dir=str(out),
        seeds=[1, 2],
        baseline="GRU4Rec",
    )
    assert [(r["model"], r["seed"]) for r in results] == [("GRU4Rec", 1), ("SASRec", 1), ("GRU4Rec", 2), ("SASRec", 2)]
    assert "± " in table and "Paired tests against GRU4Rec" in table
    with open(out / "tiny-compare.csv") as f:
        rows = {r["model"]: r for r in csv.DictReader(f)}
    sasrec = [r["test_result"]["ndcg@10"] for r in results if r["model"] == "SASRec"]
    assert float(rows["SASRec"]["ndcg@10"]) == pytest.approx(np.mean(sasrec))
    assert float(rows["SASRec"]["ndcg@10_std"]) == pytest.approx(np.std(sasrec, ddof=1))
    with open(out / "tiny-compare-significance.csv") as f:
        tests = list(csv.DictReader(f))
    assert {(t["seed"], t["metric"]) for t in tests} == {
        (s, m) for s in ("1", "2", "pooled") for m in ("ndcg@10", "recall@10")
    }
    assert all(t["model"] == "SASRec" and t["baseline"] == "GRU4Rec" for t in tests)
    pooled = next(t for t in tests if t["seed"] == "pooled" and t["metric"] == "ndcg@10")
    assert float(pooled["difference"]) == pytest.approx(np.mean(sasrec) - float(rows["GRU4Rec"]["ndcg@10"]), abs=1e-4)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["significance"], "the following arguments are required: --checkpoints"),
        (["significance", "--checkpoints=a.pth"], "exactly two files"),
        (["significance", "--checkpoints=nope.pth,nope.pth"], "nope.pth"),
        (["compare", "SASRec", "--seeds=1,x"], "--seeds must be comma-separated integers"),
        (["compare", "SASRec", "--seeds=1,1"], "distinct integers"),
        (["compare", "SASRec", "--baseline=DuoRec"], "--baseline 'DuoRec' is not among"),
        (["--model=SASRec", "--seeds=1,2"], "belong to a comparison"),
    ],
)
def test_bad_significance_and_compare_input_is_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0


def test_an_unmeasured_metric_is_refused_in_one_line(trained, capsys):
    _, result, _ = trained
    path = result["saved_model_file"]
    assert main(["significance", f"--checkpoints={path},{path}", "--metrics=ndcg@7"]) == 2
    assert "Cannot test ndcg@7" in capsys.readouterr().err


def test_tests_that_are_undefined_say_so():
    one = paired_test([0.1], [0.3], "ndcg@10")  # a single user
    assert one.p_t is None and one.p_wilcoxon is None and not one.identical
    same_shift = paired_test([0.1, 0.2, 0.4], [0.3, 0.4, 0.6], "ndcg@10")  # every user +0.2 (floating point)
    assert same_shift.p_t is None and same_shift.p_wilcoxon is not None and not same_shift.identical


def test_a_run_without_a_top_k_metric_still_tests_and_has_no_per_user_values(tiny, capsys):
    settings = {**tiny, "epochs": 1, "metrics": ["GAUC"], "valid_metric": "GAUC"}
    result = run_recbole_rag("SASRec", "tiny", config_dict=settings, per_user=True)
    assert "gauc" in result["test_result"] and result["per_user"] == {}
    path = result["saved_model_file"]
    assert main(["significance", f"--checkpoints={path},{path}"]) == 2
    assert "no per-user values: they need full ranking" in capsys.readouterr().err


def test_a_sampled_ranking_has_no_per_user_values_to_pair(tiny):
    args = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "uni10"}
    result = run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "epochs": 1, "eval_args": args}, per_user=True)
    assert result["per_user"] == {}
