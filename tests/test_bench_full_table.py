import csv
import logging
import os

import numpy as np
import pytest

from bench import full_table, raft_study
from bench.accuracy import Run, run_all
from recbole_rag import run_recbole_rag


def _argv(tiny, out):
    return [f"--{k}={v}" for k, v in tiny.items() if k not in ("epochs", "checkpoint_dir")] + [
        "--dataset=tiny",
        "--epochs=2",
        "--retrieval_k=3",
        f"--out_dir={out}",
    ]


def test_full_table_writes_one_row_per_model_and_reruns_nothing(tiny, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO)  # what a run outside pytest logs
    out = tmp_path / "res"
    argv = _argv(tiny, out) + ["--runs=DuoRec,RaSeRec@DuoRec", "--state=INFO"]
    assert full_table.main(argv) == 0
    with open(out / "tiny-full.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["DuoRec", "RaSeRec@DuoRec"]
    assert set(full_table.CSV_HEADER) <= set(rows[0])
    assert all(r["epochs_run"] == "2" and r["best_epoch"] in ("0", "1") for r in rows)
    assert all(r["stopped_early"] == "False" for r in rows)  # 2 epochs: the budget ran out first
    text = (out / "tiny-full.md").read_text()
    assert "RaSeRec@DuoRec vs DuoRec: recall@5" in text and "Not stopped early" in text
    logs = sorted(p for p in os.listdir(out / "tiny-full") if p.endswith(".log"))
    assert len(logs) == 2 and "epoch 1 evaluating" in (out / "tiny-full" / logs[0]).read_text()
    capsys.readouterr()
    assert full_table.main(argv) == 0
    assert "run  " not in capsys.readouterr().out  # both rows read back


def test_a_row_stopped_midway_continues_from_its_last_epoch(tiny, tmp_path):
    settings = {**tiny, "epochs": 3}
    runs, store = [Run("SASRec", "SASRec")], str(tmp_path / "store")

    def stopped_after_one_epoch(model, dataset, config_dict, per_user=False):
        run_recbole_rag(model, dataset, config_dict={**config_dict, "epochs": 1})
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_all(runs, "tiny", [1], settings, store, stopped_after_one_epoch, print)
    messages = []
    results, _ = run_all(runs, "tiny", [1], settings, store, log=messages.append)
    assert any(m.startswith("resume SASRec seed 1 from") for m in messages)
    whole = run_recbole_rag("SASRec", "tiny", config_dict={**settings, "seed": 1})
    resumed = results["SASRec"][0]
    assert resumed["epochs_run"] == 3 and resumed["test_result"] == whole["test_result"]


def test_published_rows_beside_ours_on_beauty(tmp_path):
    fake = {
        "test_result": dict.fromkeys(full_table.METRICS, 0.05),
        "train_time_s": 10.0,
        "epochs_run": 40,
        "best_epoch": 29,
        "stopped_early": True,
        "settings": {"seed": 2020},
    }
    table = full_table.write_full_table(
        {"DuoRec": [fake], "RaSeRec@DuoRec": [fake]}, "amazon-beauty", "b", str(tmp_path)
    )
    assert "| *RaSeRec@DuoRec* | *RaSeRec paper (Papers with Code)* | 0.0569 | 0.0860 |" in table
    assert "| *DuoRec* | *RaSeRec authors' log* | 0.0541 | 0.0834 |" in table
    assert "| DuoRec | ours (seed 2020) | 0.0500 |" in table


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--runs=RaSeRec@DuoRec"], "list DuoRec before it"),
        (["--runs=SRACL(SASRec)"], "Unknown run"),
    ],
)
def test_full_table_bad_arguments(argv, message, capsys):
    assert full_table.main(["--dataset=tiny"] + argv) == 2
    assert message in capsys.readouterr().err


def test_raft_study_reads_the_full_table_and_measures_banks_tail_and_variants(tiny, tmp_path, monkeypatch):
    out = tmp_path / "res"
    argv = _argv(tiny, out)
    assert full_table.main(argv + ["--runs=DuoRec,RaSeRec@DuoRec"]) == 0
    monkeypatch.setattr(raft_study, "VARIANTS", [("RAFT batch 16", {"raft_train_batch_size": 16}, None)])
    monkeypatch.setattr(raft_study, "GROUPS", 2)
    assert raft_study.main(argv) == 0
    with open(out / "tiny-raft-bank.csv") as f:
        banks = list(csv.reader(f))[1:]
    duorec = full_table_row(out, "DuoRec")
    assert float(banks[0][2]) == pytest.approx(float(duorec["ndcg@10"]), abs=1e-4)  # alpha = 1 is the backbone
    assert banks[2][0].startswith("+ ") and "validation pairs" in banks[2][0]
    assert float(banks[2][2]) == pytest.approx(float(full_table_row(out, "RaSeRec@DuoRec")["ndcg@10"]), abs=1e-4)
    with open(out / "tiny-longtail.csv") as f:
        groups = list(csv.DictReader(f))
    assert len(groups) == 2 and sum(int(g["users"]) for g in groups) == 60
    assert (out / "tiny-longtail.png").stat().st_size > 0
    with open(out / "tiny-raft-variants.csv") as f:
        variants = list(csv.DictReader(f))
    assert [v["variant"] for v in variants] == ["RaSeRec@DuoRec (full table)", "RAFT batch 16"]


def full_table_row(out, model):
    with open(out / "tiny-full.csv") as f:
        return next(r for r in csv.DictReader(f) if r["model"] == model)


def test_raft_study_needs_the_full_table_first(tmp_path, capsys):
    assert raft_study.main(["--dataset=tiny", f"--out_dir={tmp_path}"]) == 2
    assert "run bench/full_table.py first" in capsys.readouterr().err
    assert raft_study.main(["--dataset=tiny", "--parts=memory,nope"]) == 2
    assert "--parts takes" in capsys.readouterr().err


def test_popularity_groups_are_equal_and_ordered():
    class Train:
        iid_field, item_num = "item_id", 5
        inter_feat = {"item_id": __import__("torch").tensor([1, 1, 1, 2, 2, 3])}

    groups = raft_study.popularity_groups(Train(), np.array([3, 1, 2, 4]), n_groups=2)
    assert [sorted(g[0].tolist()) for g in groups] == [[0, 3], [1, 2]]  # items 4 (0) and 3 (1) first
    assert [(g[1], g[2]) for g in groups] == [(0, 1), (2, 3)]
    assert raft_study.metrics_of(np.array([0, 9, 10]))["recall@10"] == pytest.approx(2 / 3)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_scripts_say_what_is_missing(tmp_path):
    import subprocess

    prepare = subprocess.run(
        ["bash", os.path.join(REPO, "bench", "gpu_prepare.sh"), str(tmp_path)], capture_output=True, text=True
    )
    assert prepare.returncode == 2 and f"no {tmp_path}/amazon-beauty/amazon-beauty.inter" in prepare.stderr
    if os.path.isdir(os.path.join(REPO, ".gpu", "whl")):
        pytest.skip("this checkout is prepared for the GPU run")
    full = subprocess.run(["bash", os.path.join(REPO, "bench", "gpu_full.sh")], capture_output=True, text=True)
    assert full.returncode == 2 and "run bash bench/gpu_prepare.sh DATA_PATH first" in full.stderr
