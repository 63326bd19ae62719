"""bench.table1_seeds: Beauty's close regeneration verdicts at two seeds, each seed tested and the
two pooled over the same test users; seed 2020's rows shown while seed 2021's are still to run."""

import csv
import os

import numpy as np
import pytest

from bench import table1_seeds
from bench.accuracy import METRICS
from recbole_rag.significance import USER, compare_runs, mean_over_runs, per_user_path, save_per_user

USERS = np.array([f"u{i}" for i in range(400)])
RATES = {"SASRec": 0.1, "SASRec+regen": 0.4, "DuoRec": 0.3, "DuoRec+regen": 0.3}


def _row(store, label, seed):
    rng = np.random.default_rng([seed, len(label)])
    hits = (rng.random(len(USERS)) < RATES[label]).astype(float)
    per_user = {USER: USERS, **{m: hits for m in METRICS}}
    path = os.path.join(store, f"{label}-seed{seed}-0000000000.json")
    save_per_user(per_user_path(path), per_user)
    test = {m: round(float(hits.mean()), 4) for m in METRICS}
    settings = {"label": label, "seed": seed, "overrides": {}}
    return {"path": path, "test_result": test, "saved_model_file": path + ".pth", "settings": settings}, per_user


@pytest.fixture
def stored(tmp_path, monkeypatch):
    """Seed 2020's rows stored; seed 2021's only once ``--run`` trains them."""
    store = str(tmp_path / "store")
    rows = {(label, seed): _row(store, label, seed) for label in RATES for seed in table1_seeds.SEEDS}
    calls, item_tables = [], []

    def fake_run_all(runs, dataset, seeds, overrides, store_dir, log=print, read_dirs=(), train=True):
        (seed,) = seeds
        calls.append((dataset, seed, train, overrides["regen_source_tokens"], store_dir))
        if seed == 2021 and not train:
            return {}, {r.label: "not run yet (seed 2021)" for r in runs}
        return {r.label: [rows[r.label, seed][0]] for r in runs}, {}

    def fake_per_user_of(row, dataset, store_dir, log=print, backfill=False, sasrec=None):
        label, seed = row["settings"]["label"], row["settings"]["seed"]
        item_tables.append((label, seed, sasrec["settings"]["seed"]))
        if seed == 2020 and label.endswith("+regen") and not backfill:
            return None  # stored before per-user values were kept: evaluated only with --per_user
        return rows[label, seed][1]

    monkeypatch.setattr(table1_seeds, "run_all", fake_run_all)
    monkeypatch.setattr(table1_seeds, "per_user_of", fake_per_user_of)
    return rows, calls, item_tables


def _csv(path):
    with open(path) as f:
        header, *rows = list(csv.reader(f))
    assert all(len(row) == len(header) for row in rows)
    return [dict(zip(header, row)) for row in rows]


def test_seed_2020_is_tested_while_seed_2021_is_still_to_run(stored, tmp_path):
    rows, calls, _ = stored
    assert table1_seeds.main(["--data_path=data", f"--out_dir={tmp_path}"]) == 0
    text = (tmp_path / "table1-seeds.md").read_text()
    assert text.count("no per-user values stored (run with --per_user)") == 2  # each pair's seed 2020
    assert text.count("not run yet (seed 2021)") == 4  # each pair's seed 2021 and pooled rows
    assert [r["p_value"] for r in _csv(tmp_path / "table1-seeds.csv")] == ["", ""]
    calls.clear()
    assert table1_seeds.main(["--data_path=data", f"--out_dir={tmp_path}", "--per_user"]) == 0
    assert [c[:3] for c in calls] == [("amazon-beauty", 2020, False), ("amazon-beauty", 2021, False)]
    assert calls[0][3] is False  # Table 1's recipe, Table 1's store
    assert calls[0][4] == str(tmp_path / "dr4sr-full" / "amazon-beauty-accuracy")
    table = _csv(tmp_path / "table1-seeds.csv")
    assert [(r["model"], r["seed"]) for r in table] == [("SASRec+regen", "2020"), ("DuoRec+regen", "2020")]
    expected = compare_runs(rows["SASRec", 2020][1], rows["SASRec+regen", 2020][1])[0]
    assert float(table[0]["p_value"]) == pytest.approx(expected.p_t) and expected.p_t < 1e-6
    gain = rows["SASRec+regen", 2020][1]["ndcg@10"].mean() - rows["SASRec", 2020][1]["ndcg@10"].mean()
    assert float(table[0]["ndcg@10_difference"]) == pytest.approx(gain) and gain > 0.2  # the row minus its base


def test_two_seeds_give_each_seeds_test_and_the_pooled_one(stored, tmp_path):
    rows, calls, item_tables = stored
    assert table1_seeds.main(["--data_path=data", f"--out_dir={tmp_path}", "--run"]) == 0
    table = {(r["model"], r["seed"]): r for r in _csv(tmp_path / "table1-seeds.csv")}
    assert table["SASRec+regen", "2021"]["p_value"] != ""  # seed 2021 kept its per-user values
    assert table["SASRec+regen", "pooled"]["p_value"] == ""  # not pooled over one seed's values
    calls.clear()
    assert table1_seeds.main(["--data_path=data", f"--out_dir={tmp_path}", "--run", "--per_user"]) == 0
    assert [c[2] for c in calls] == [True, True]
    # each seed's rows are tested with the same seed's SASRec (its regenerator's item table)
    assert all(seed == table_seed for _, seed, table_seed in item_tables)
    table = {(r["model"], r["seed"]): r for r in _csv(tmp_path / "table1-seeds.csv")}
    assert set(table) == {(m, s) for m in ("SASRec+regen", "DuoRec+regen") for s in ("2020", "2021", "pooled")}
    base = mean_over_runs([rows["SASRec", s][1] for s in table1_seeds.SEEDS])
    row = mean_over_runs([rows["SASRec+regen", s][1] for s in table1_seeds.SEEDS])
    pooled = compare_runs(base, row)[0]
    assert float(table["SASRec+regen", "pooled"]["p_value"]) == pytest.approx(pooled.p_t)
    mean = np.mean([rows["SASRec+regen", s][0]["test_result"]["ndcg@10"] for s in table1_seeds.SEEDS])
    assert float(table["SASRec+regen", "pooled"]["ndcg@10"]) == pytest.approx(mean)
    # DuoRec+regen draws at DuoRec's rate: no gain beyond chance, pooled or not
    assert float(table["DuoRec+regen", "pooled"]["p_value"]) > 1e-3


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "--data_path is required"),
        (["--data_path=d", "--dataset=amazon-toys-games"], "amazon-beauty's close verdicts only"),
        (["--data_path=d", "--run=yes"], "--run"),
    ],
)
def test_bad_arguments_are_one_line(argv, message, capsys):
    assert table1_seeds.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0
