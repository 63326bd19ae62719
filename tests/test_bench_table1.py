"""bench.table1: the three datasets' blocks from stored rows, each improvement with the paired
test of its per-user values, rows that lack them evaluated from their checkpoints on request."""

import csv
import os

import numpy as np
import pytest

from bench import table1
from bench.accuracy import METRICS
from recbole_rag.errors import ConfigError
from recbole_rag.significance import USER, compare_runs, load_per_user, per_user_path, save_per_user

USERS = np.array([f"u{i}" for i in range(400)])


def _row(store, label, hit_rate, seed, with_per_user=True):
    """A stored row whose test users hit at ``hit_rate`` (its per-user file beside it)."""
    rng = np.random.default_rng(seed)
    hits = (rng.random(len(USERS)) < hit_rate).astype(float)
    per_user = {USER: USERS, **{m: hits for m in METRICS}}
    path = os.path.join(store, f"{label}-seed2020-0000000000.json")
    if with_per_user:
        save_per_user(per_user_path(path), per_user)
    test = {m: round(float(hits.mean()), 4) for m in METRICS}
    row = {"path": path, "test_result": test, "stopped_early": True, "best_epoch": 3, "epochs_run": 5}
    row.update(saved_model_file=f"{store}/{label}.pth", settings={"label": label, "seed": 2020, "overrides": {}})
    return row, per_user


@pytest.fixture
def stored(tmp_path, monkeypatch):
    """Every dataset's rows stored (Sports' without DuoRec), the pipeline rows clearly better."""
    store = str(tmp_path / "store")
    rates = {"SASRec": 0.2, "SASRec+regen+RAFT(pairs)": 0.4, "RaSeRec@SASRec": 0.2, "DuoRec": 0.3}
    rates.update({"DuoRec+regen+RAFT(pairs)": 0.31, "RaSeRec@DuoRec": 0.3})
    rows = {label: _row(store, label, rate, seed) for seed, (label, rate) in enumerate(rates.items())}
    rows["RaSeRec@SASRec"] = rows["SASRec"][0] | {"path": os.path.join(store, "same.json")}, rows["SASRec"][1]
    save_per_user(per_user_path(rows["RaSeRec@SASRec"][0]["path"]), rows["SASRec"][1])
    calls = []

    def fake_run_all(runs, dataset, seeds, overrides, store_dir, log=print, read_dirs=(), train=True):
        calls.append(
            (dataset, train, overrides["regen_data_path"], store_dir, read_dirs, overrides.get("eval_batch_size"))
        )
        labels = [r.label for r in runs if not (dataset == "amazon-sports-outdoors" and "DuoRec" in r.label)]
        skipped = {r.label: "not run yet (seed 2020)" for r in runs if r.label not in labels}
        return {label: [rows[label][0]] for label in labels if label in rows}, skipped

    monkeypatch.setattr(table1, "run_all", fake_run_all)
    return rows, calls


def test_the_table_has_each_datasets_rows_and_the_p_value_of_each_improvement(stored, tmp_path, capsys):
    rows, calls = stored
    assert table1.main(["--data_path=data", f"--out_dir={tmp_path}"]) == 0
    assert [c[:2] for c in calls] == [(d, False) for d in table1.DATASETS]  # nothing trains without --run
    assert calls[0][3:5] == (
        str(tmp_path / "dr4sr-full/amazon-beauty-accuracy"),
        [str(tmp_path / "amazon-beauty-full")],
    )
    assert calls[1][2] == str(tmp_path / "table1" / "regen-data")
    with open(tmp_path / "table1.csv") as f:
        table = [r for r in csv.DictReader(f) if r["source"] == "ours"]
    beauty = {r["model"]: r for r in table if r["dataset"] == "amazon-beauty"}
    assert list(beauty) == [name for name, _, _ in table1.TABLE]
    assert beauty["SASRec"]["p_value"] == "" and beauty["SASRec"]["stopped_early"] == "True"
    expected = compare_runs(rows["SASRec"][1], rows["SASRec+regen+RAFT(pairs)"][1])[0]
    assert float(beauty["SASRec + pipeline"]["p_value"]) == pytest.approx(expected.p_t) and expected.p_t < 1e-6
    assert float(beauty["SASRec + pipeline"]["ndcg@10_difference"]) == pytest.approx(0.2, abs=0.05)
    assert beauty["RaSeRec@SASRec"]["p_value"] == ""  # identical per-user values: no test to make
    assert float(beauty["DuoRec + pipeline"]["p_value"]) > 0.05  # one point in 400 users is chance
    sports = {r["model"] for r in table if r["dataset"] == "amazon-sports-outdoors"}
    assert sports == {"SASRec", "SASRec + pipeline", "RaSeRec@SASRec"}
    text = (tmp_path / "table1.md").read_text()
    assert "*three-stage study, Table 1* | 0.0619 | 0.0890" in text  # Toys SASRec, beside ours
    assert "| DuoRec | ours |" in text and "not run yet (seed 2020)" in text
    assert "| RaSeRec@SASRec | ours |" in text and "identical" in text

    calls.clear()  # --run trains only the datasets named; other settings go to every row
    argv = [
        "--data_path=data",
        f"--out_dir={tmp_path}",
        "--datasets=amazon-toys-games",
        "--run",
        "--eval_batch_size=64",
    ]
    assert table1.main(argv) == 0
    assert [(c[0], c[1], c[5]) for c in calls] == [(d, d == "amazon-toys-games", 64) for d in table1.DATASETS]
    assert "Every run with eval_batch_size=64." in (tmp_path / "table1.md").read_text()


def test_rows_without_per_user_values_are_evaluated_only_when_asked(stored, tmp_path, monkeypatch):
    rows, _ = stored
    row, per_user = rows["DuoRec"]
    os.remove(per_user_path(row["path"]))
    seen, test_result = [], dict(row["test_result"])

    def fake_evaluate(checkpoint, overrides, per_user=False):
        seen.append(checkpoint)
        return test_result, rows["DuoRec"][1]

    monkeypatch.setattr(table1, "evaluate", fake_evaluate)
    assert table1.per_user_of(row, "amazon-beauty", "store") is None and seen == []
    assert not os.path.exists(row["saved_model_file"])
    with pytest.raises(ConfigError, match="is gone"):
        table1.per_user_of(row, "amazon-beauty", "store", backfill=True)
    open(row["saved_model_file"], "w").close()
    back = table1.per_user_of(row, "amazon-beauty", "store", backfill=True)
    assert seen == [row["saved_model_file"]]
    np.testing.assert_array_equal(back["ndcg@10"], per_user["ndcg@10"])
    np.testing.assert_array_equal(load_per_user(per_user_path(row["path"]))["ndcg@10"], per_user["ndcg@10"])

    os.remove(per_user_path(row["path"]))
    row["test_result"] = {**test_result, "recall@20": test_result["recall@20"] + 3e-4}  # a rebuilt bank's few ties
    again = table1.per_user_of(row, "amazon-beauty", "store", backfill=True)
    assert table1._drift_note(row, again).startswith("tested on recall@20")
    assert table1._drift_note(rows["SASRec"][0], rows["SASRec"][1]) == ""

    os.remove(per_user_path(row["path"]))
    row["test_result"] = {**test_result, "ndcg@10": 0.9}  # the checkpoint no longer gives the row's result
    with pytest.raises(ConfigError, match="not the run's test"):
        table1.per_user_of(row, "amazon-beauty", "store", backfill=True)
    assert not os.path.exists(per_user_path(row["path"]))


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "--data_path is required"),
        (["--data_path=d", "--datasets=amazon-books"], "--datasets takes some of amazon-beauty"),
        (["--data_path=d", "--dataset=amazon-beauty"], "takes --datasets"),
        (["--data_path=d", "--epochs"], "--epochs"),
    ],
)
def test_bad_arguments_are_one_line(argv, message, capsys):
    assert table1.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0
