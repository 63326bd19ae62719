import csv
import glob
import json
import os
import shutil

import numpy as np
import pytest
import torch

from bench import accuracy, table1
from bench.accuracy import Run, parse_seeds, run_all, select_runs, write_accuracy
from recbole_rag import run_recbole_rag
from recbole_rag.errors import ConfigError
from recbole_rag.regeneration.writer import ADDED_REGEN_KEYS, item_table_fingerprint
from recbole_rag.significance import load_per_user, per_user_path

RUNS = [
    Run("SASRec", "SASRec"),
    Run("RaSeRec@SASRec", "RaSeRec", {"retrieval_k": 5}, backbone="SASRec"),
    Run("Pipeline", "NoSuchModelYet"),
    Run("RaSeRec@Pipeline", "RaSeRec", backbone="Pipeline"),
]


def test_runs_resume_and_skip_missing_models(tiny, tmp_path):
    calls = []

    def counting_run(model, dataset, config_dict, per_user=False):
        calls.append((model, config_dict["seed"], config_dict.get("pretrained_path")))
        return run_recbole_rag(model, dataset, config_dict=config_dict, per_user=per_user)

    out = str(tmp_path / "res")
    store = str(tmp_path / "res" / "tiny-accuracy")
    settings = {**tiny, "epochs": 1, "raft_epochs": 1}
    messages = []
    results, skipped = run_all(RUNS, "tiny", [1, 2], settings, store, counting_run, messages.append)
    assert [c[:2] for c in calls] == [("SASRec", 1), ("SASRec", 2), ("RaSeRec", 1), ("RaSeRec", 2)]
    # RaSeRec starts from the SASRec checkpoint of the same seed
    assert calls[2][2] == results["SASRec"][0]["saved_model_file"]
    assert calls[3][2] == results["SASRec"][1]["saved_model_file"]
    assert skipped == {
        "Pipeline": "model NoSuchModelYet not available in this build",
        "RaSeRec@Pipeline": "its backbone Pipeline was skipped",
    }
    assert any("skip Pipeline: model NoSuchModelYet not available" in m for m in messages)

    calls.clear()
    again, _ = run_all(RUNS, "tiny", [1, 2], settings, store, counting_run, messages.append)
    assert calls == []  # every finished run is read back, none re-run
    assert again["RaSeRec@SASRec"][1]["test_result"] == results["RaSeRec@SASRec"][1]["test_result"]

    calls.clear()  # another budget is another result
    run_all(RUNS[:1], "tiny", [1], {**settings, "epochs": 2}, store, counting_run, messages.append)
    assert calls == [("SASRec", 1, None)]

    table = write_accuracy(results, skipped, "tiny", [1, 2], "epochs=1", out)
    assert "| SASRec | ours | 2 |" in table and "±" in table
    # RaSeRec@SASRec is tested against SASRec over the same test users, pooled over both seeds
    (raft_line,) = [line for line in table.splitlines() if line.startswith("| RaSeRec@SASRec | ours |")]
    assert "| SASRec | " in raft_line and " p=" in raft_line
    text = (tmp_path / "res" / "tiny-accuracy.md").read_text()
    assert "Pipeline: skipped (model NoSuchModelYet not available in this build)" in text
    with open(tmp_path / "res" / "tiny-accuracy.csv") as f:
        rows = list(csv.DictReader(f))
    ndcg = [r["test_result"]["ndcg@10"] for r in results["SASRec"]]
    assert float(rows[0]["ndcg@10"]) == pytest.approx(sum(ndcg) / 2, abs=1e-6)
    raft = next(r for r in rows if r["method"] == "RaSeRec@SASRec")
    assert raft["base"] == "SASRec" and 0 <= float(raft["p_value"]) <= 1 and rows[0]["base"] == ""
    assert float(raft["ndcg@10_ci_low"]) <= float(raft["ndcg@10_difference"]) <= float(raft["ndcg@10_ci_high"])
    stored = json.loads(open(results["SASRec"][0]["path"]).read())
    assert stored["settings"]["seed"] == 1
    assert "optimizer" not in torch.load(results["SASRec"][0]["saved_model_file"], weights_only=True)  # weights only
    per_user = load_per_user(per_user_path(results["SASRec"][0]["path"]))  # for the paired tests of a table
    assert np.mean(per_user["ndcg@10"]) == pytest.approx(ndcg[0], abs=5e-5)


def test_published_numbers_stand_beside_ours(tmp_path):
    fake = {"test_result": dict.fromkeys(accuracy.METRICS, 0.01), "train_time_s": 1.0}
    table = write_accuracy({"RaSeRec@DuoRec": [fake]}, {}, "amazon-beauty", [2020], "epochs=1", str(tmp_path))
    assert "*RaSeRec authors' log* |  | 0.0567 | 0.0863 | 0.1244 | 0.0367 | 0.0462 | 0.0558" in table


def test_every_row_can_be_named_in_runs():
    """--runs splits on commas: a label with one could never be selected."""
    labels = [run.label for run in accuracy.RUNS]
    assert [run.label for run in select_runs(accuracy.parse_labels(",".join(labels)))] == labels


def test_every_published_number_stands_beside_a_row_we_run():
    """A published figure keyed to a label no row has would never be printed."""
    labels = {run.label for run in accuracy.RUNS}
    for dataset, rows in accuracy.PUBLISHED.items():
        assert set(rows) <= labels, (dataset, set(rows) - labels)


def test_bad_arguments_give_clear_errors(tiny, capsys):
    with pytest.raises(ConfigError, match="comma-separated integers"):
        parse_seeds("2020,x")
    with pytest.raises(ConfigError, match="no repeats"):
        parse_seeds("1,1")
    with pytest.raises(ConfigError, match="Unknown run"):
        select_runs(["SASRec", "Nope"])
    with pytest.raises(ConfigError, match="list SASRec before it"):
        select_runs(["RaSeRec@SASRec"])
    with pytest.raises(ConfigError, match="regenerates from SASRec's item table"):
        select_runs(["DuoRec", "DuoRec+regen"])
    assert [run.label for run in select_runs(["DuoRec", "DuoRec+regen"], item_table_given=True)][-1] == "DuoRec+regen"
    with pytest.raises(ConfigError, match="regenerates from SASRec \\(DR4SR protocol\\)'s item table"):
        select_runs(["SASRec", "SASRec+regen (DR4SR protocol)"])
    assert accuracy.main(["--dataset=tiny", "--runs=DuoRec,DuoRec+regen"]) == 2
    assert capsys.readouterr().err.startswith("error: 'DuoRec+regen' regenerates from SASRec's item table")
    assert accuracy.main(["--dataset=tiny", "--epochs=0"]) == 2
    assert "--epochs must be >= 1" in capsys.readouterr().err
    assert accuracy.main(["--dataset=missing", "--runs=SASRec", "--data_path=nowhere"]) == 2
    assert "Dataset 'missing' not found" in capsys.readouterr().err
    assert accuracy.main([]) == 2  # --dataset is required
    err = capsys.readouterr().err
    assert "--dataset" in err and err.startswith("error: ") and err.count("\n") == 1


def test_regenerated_rows_train_on_the_regenerated_dataset_and_raft_on_its_backbone(tiny, tmp_path):
    runs = [
        Run("SASRec", "SASRec"),
        Run("SASRec+regen", "SASRec", regenerated=True),
        Run("SASRec+regen+RAFT(pairs)", "RaSeRec", {"memory_source": "pairs"}, "SASRec+regen", True),
    ]
    datasets = []

    def recording_run(model, dataset, config_file_list=None, config_dict=None, per_user=False):
        datasets.append(dataset)
        return run_recbole_rag(model, dataset, config_file_list, config_dict, per_user=per_user)

    settings = {
        **tiny,
        "epochs": 1,
        "raft_epochs": 1,
        "pattern_min_support": 2,
        "retrieval_k": 3,
        "regen_data_path": str(tmp_path / "regen"),
    }
    results, skipped = run_all(runs, "tiny", [1], settings, str(tmp_path / "store"), recording_run, lambda m: None)
    assert not skipped and datasets == ["tiny", "tiny-regen", "tiny-regen"]
    manifest = json.loads((tmp_path / "regen" / "seed1" / "tiny-regen" / "manifest.json").read_text())
    # the regenerator's item table starts from the SASRec row's checkpoint, as the reference's
    assert manifest["settings"]["regen_item_embedding"] == item_table_fingerprint(
        results["SASRec"][0]["saved_model_file"]
    )
    assert set(results["SASRec+regen+RAFT(pairs)"][0]["test_result"]) == set(results["SASRec+regen"][0]["test_result"])
    # the regenerator keeps its per-epoch state in one folder of the store, named by its pre-training
    (regenerator_dir,) = glob.glob(str(tmp_path / "store" / "regenerator-seed1-*"))
    assert glob.glob(os.path.join(regenerator_dir, "*-last.pth"))
    # with the set gone, the control row decodes it again from that regenerator: no second pre-training
    shutil.rmtree(tmp_path / "regen" / "seed1")
    logged = []
    control = [Run("SASRec", "SASRec"), Run("SASRec+regen-control", "SASRec", regenerated="control")]
    run_all(control, "tiny", [1], settings, str(tmp_path / "store"), run_recbole_rag, logged.append)
    assert any(m.startswith("resume the regenerator") and regenerator_dir in m for m in logged)
    assert (tmp_path / "regen" / "seed1" / "tiny-regen-control" / "manifest.json").is_file()
    assert glob.glob(str(tmp_path / "store" / "regenerator-seed1-*")) == [regenerator_dir]
    # a finished regenerator kept without its -last file decodes from its final checkpoint alone:
    # nothing is pre-trained again (a new pre-training would write a -last file)
    for last in glob.glob(os.path.join(regenerator_dir, "*-last.pth")):
        os.remove(last)
    shutil.rmtree(tmp_path / "regen" / "seed1" / "tiny-regen-control")
    for stored in glob.glob(str(tmp_path / "store" / "SASRec+regen-control-seed1-*.json")):
        os.remove(stored)
    alone = []
    run_all(control, "tiny", [1], settings, str(tmp_path / "store"), run_recbole_rag, alone.append)
    assert any(m.startswith("resume the regenerator") and regenerator_dir in m for m in alone)
    assert (tmp_path / "regen" / "seed1" / "tiny-regen-control" / "manifest.json").is_file()
    assert not glob.glob(os.path.join(regenerator_dir, "*-last.pth"))
    # a row that decodes otherwise reuses the regenerator too, and writes its set beside the other
    longer = [Run("SASRec", "SASRec"), Run("SASRec+regen(min_len=3)", "SASRec", {"regen_min_len": 3}, regenerated=True)]
    results, _ = run_all(longer, "tiny", [1], settings, str(tmp_path / "store"), recording_run, logged.append)
    assert datasets[-1] == "tiny-regen" and sum(m.startswith("resume the regenerator") for m in logged) == 2
    sets = tmp_path / "regen" / "seed1"
    variant = json.loads((sets / "regen_min_len=3" / "tiny-regen" / "manifest.json").read_text())
    assert variant["settings"]["regen_min_len"] == 3
    assert json.loads((sets / "tiny-regen-control" / "manifest.json").read_text())["control"]
    # a row that mines otherwise pre-trains a regenerator of its own and writes its set beside the others
    # (its own `epochs` is the backbone's: it names neither the regenerator nor the set's folder)
    mined = [Run("SASRec", "SASRec"), Run("regen(3+)", "SASRec", {"pattern_min_len": 3, "epochs": 1}, regenerated=True)]
    run_all(mined, "tiny", [1], settings, str(tmp_path / "store"), run_recbole_rag, logged.append)
    assert len(glob.glob(str(tmp_path / "store" / "regenerator-seed1-*"))) == 2
    own = json.loads((sets / "pattern_min_len=3" / "tiny-regen" / "manifest.json").read_text())
    assert own["settings"]["pattern_min_len"] == 3 and manifest["settings"]["pattern_min_len"] != 3
    # another seed regenerates with a regenerator of its own, into a folder of its own
    results, _ = run_all(runs[:2], "tiny", [2], settings, str(tmp_path / "store"), run_recbole_rag, logged.append)
    second = json.loads((tmp_path / "regen" / "seed2" / "tiny-regen" / "manifest.json").read_text())
    assert second["settings"]["seed"] == 2 and manifest["settings"]["seed"] == 1


def test_facts_a_trainer_reports_are_stored_and_noted(tmp_path):
    def sracl_like_run(model, dataset, config_dict, per_user=False):
        return {
            "model": model,
            "dataset": dataset,
            "test_result": dict.fromkeys(accuracy.METRICS, 0.02),
            "best_valid_result": {},
            "train_time_s": 1.0,
            "epochs_run": 1,
            "saved_model_file": None,
            "semantic_source": "text (template): title; users: items",
        }

    runs = [Run("SRACL(SASRec)", "SRACL")]
    results, skipped = run_all(runs, "tiny", [1], {}, str(tmp_path / "store"), sracl_like_run, print)
    stored = json.loads(open(results["SRACL(SASRec)"][0]["path"]).read())
    assert stored["run_info"] == {"semantic_source": "text (template): title; users: items"}
    write_accuracy(results, skipped, "tiny", [1], "epochs=1", str(tmp_path))
    text = (tmp_path / "tiny-accuracy.md").read_text()
    assert "SRACL(SASRec): semantic_source: text (template): title; users: items." in text


def test_a_changed_yaml_default_runs_again(tmp_path, monkeypatch):
    model_yaml = tmp_path / "SRACL.yaml"
    model_yaml.write_text("intra_weight: 0.1\n")
    monkeypatch.setattr(accuracy, "property_files", lambda model, dataset: [str(model_yaml)])
    calls = []

    def fake_run(model, dataset, config_dict, per_user=False):
        calls.append(model)
        metrics = {m: 0.1 for m in accuracy.METRICS}
        return {
            "test_result": metrics,
            "best_valid_result": metrics,
            "train_time_s": 1.0,
            "epochs_run": 1,
            "saved_model_file": None,
        }

    runs, store = [Run("SRACL(SASRec)", "SRACL")], str(tmp_path / "store")
    run_all(runs, "tiny", [1], {}, store, fake_run, print)
    run_all(runs, "tiny", [1], {}, store, fake_run, print)
    assert calls == ["SRACL"]  # same defaults: read back
    model_yaml.write_text("intra_weight: 0.03  # a new default\n")
    results, _ = run_all(runs, "tiny", [1], {}, store, fake_run, print)
    assert calls == ["SRACL", "SRACL"]
    assert results["SRACL(SASRec)"][0]["settings"]["defaults"] == {"SRACL.yaml": {"intra_weight": 0.03}}


def test_the_table_names_settings_given_for_every_run(tmp_path, monkeypatch):
    fake = {"test_result": dict.fromkeys(accuracy.METRICS, 0.01), "train_time_s": 1.0}
    seen = {}

    def fake_run_all(runs, dataset, seeds, overrides, store_dir):
        seen.update(overrides)
        return {"SASRec": [fake]}, {}

    monkeypatch.setattr(accuracy, "run_all", fake_run_all)
    assert (
        accuracy.main(["--dataset=tiny", "--runs=SASRec", "--epochs=2", "--intra_weight=0", f"--out_dir={tmp_path}"])
        == 0
    )
    assert seen["intra_weight"] == 0
    assert (
        "Budget: epochs=2, raft_epochs=YAML; every run with intra_weight=0;"
        in (tmp_path / "tiny-accuracy.md").read_text()
    )


def test_a_default_moved_to_another_yaml_file_keeps_the_stored_result(tmp_path):
    split = {
        "label": "A",
        "model": "SASRec",
        "backbone": None,
        "seed": 1,
        "overrides": {},
        "defaults": {"overall.yaml": {"epochs": 5, "hidden_size": 64}, "SASRec.yaml": {"n_layers": 2}},
    }
    stored = accuracy.result_path(str(tmp_path), split)
    with open(stored, "w", encoding="utf-8") as f:
        json.dump({"settings": split, "test_result": {}}, f)
    merged = {**split, "defaults": {"overall.yaml": {"epochs": 5}, "base.yaml": {"hidden_size": 64, "n_layers": 2}}}
    assert accuracy.result_path(str(tmp_path), merged) != stored
    assert accuracy.stored_result_path(str(tmp_path), merged) == stored
    changed = {**merged, "defaults": {"overall.yaml": {"epochs": 5}, "base.yaml": {"hidden_size": 32, "n_layers": 2}}}
    assert accuracy.stored_result_path(str(tmp_path), changed) == accuracy.result_path(str(tmp_path), changed)


def test_a_data_path_written_another_way_keeps_the_stored_result(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    run = {"label": "A", "model": "SASRec", "backbone": None, "seed": 1, "defaults": {}}
    relative = {**run, "overrides": {"data_path": "data"}}
    stored = accuracy.result_path(str(tmp_path), relative)
    with open(stored, "w", encoding="utf-8") as f:
        json.dump({"settings": relative, "test_result": {}}, f)
    absolute = {**run, "overrides": {"data_path": str(tmp_path / "data") + "/"}}
    assert accuracy.stored_result_path(str(tmp_path), absolute) == stored
    other = {**run, "overrides": {"data_path": str(tmp_path)}}
    assert accuracy.stored_result_path(str(tmp_path), other) == accuracy.result_path(str(tmp_path), other)


def test_a_semantic_cache_elsewhere_keeps_the_stored_result(tmp_path):
    run = {"label": "S", "model": "SRACL", "backbone": None, "seed": 1, "defaults": {}}
    before = {**run, "overrides": {"semantic_cache": "/one/place/cache.npz", "tau": 1.0}}
    stored = accuracy.result_path(str(tmp_path), before)
    with open(stored, "w", encoding="utf-8") as f:
        json.dump({"settings": before, "test_result": {}}, f)
    moved = {**run, "overrides": {"semantic_cache": "another/cache.npz", "tau": 1.0}}
    assert accuracy.stored_result_path(str(tmp_path), moved) == stored
    other = {**run, "overrides": {"semantic_cache": "another/cache.npz", "tau": 0.1}}
    assert accuracy.stored_result_path(str(tmp_path), other) == accuracy.result_path(str(tmp_path), other)


def test_a_changed_ivf_default_keeps_results_that_never_read_it(tmp_path):
    def settings(nlist, overrides):
        defaults = {"RaSeRec.yaml": {"memory_index": "flat", "memory_nlist": nlist, "memory_nprobe": None}}
        run = {"label": "R", "model": "RaSeRec", "backbone": None, "seed": 1}
        return {**run, "overrides": overrides, "defaults": defaults}

    for overrides in ({}, {"memory_index": "ivf", "memory_nlist": 128}):  # flat; ivf with its own lists
        before = settings(1024, overrides)
        stored = accuracy.result_path(str(tmp_path), before)
        with open(stored, "w", encoding="utf-8") as f:
            json.dump({"settings": before, "test_result": {}}, f)
        assert accuracy.stored_result_path(str(tmp_path), settings(None, overrides)) == stored
    on_defaults = settings(1024, {"memory_index": "ivf"})  # an ivf run on the default lists runs again
    with open(accuracy.result_path(str(tmp_path), on_defaults), "w", encoding="utf-8") as f:
        json.dump({"settings": on_defaults, "test_result": {}}, f)
    changed = settings(None, {"memory_index": "ivf"})
    assert accuracy.stored_result_path(str(tmp_path), changed) == accuracy.result_path(str(tmp_path), changed)
    auto = settings(1024, {"memory_index": "auto"})  # auto builds an ivf from its lists' default too
    with open(accuracy.result_path(str(tmp_path), auto), "w", encoding="utf-8") as f:
        json.dump({"settings": auto, "test_result": {}}, f)
    changed = settings(None, {"memory_index": "auto"})
    assert accuracy.stored_result_path(str(tmp_path), changed) == accuracy.result_path(str(tmp_path), changed)


def test_a_regenerated_row_whose_sasrec_checkpoint_is_gone_says_so(tmp_path):
    def sasrec_elsewhere(model, dataset, config_dict=None, **kwargs):
        return {
            "test_result": dict.fromkeys(accuracy.METRICS, 0.02),
            "best_valid_result": {},
            "train_time_s": 1.0,
            "epochs_run": 1,
            "saved_model_file": "ran/elsewhere/SASRec.pth",
        }

    runs = [Run("SASRec", "SASRec"), Run("SASRec+regen", "SASRec", regenerated=True)]
    with pytest.raises(ConfigError, match=r"starts from SASRec's checkpoint 'ran/elsewhere/SASRec.pth', which is not"):
        run_all(runs, "tiny", [1], {}, str(tmp_path / "store"), sasrec_elsewhere, print)


def test_where_regenerated_data_goes_leaves_other_rows_settings_alone():
    plain, regenerated = Run("SASRec", "SASRec"), Run("SASRec+regen", "SASRec", regenerated=True)
    given = {"epochs": 3, "regen_data_path": "out"}
    assert accuracy.settings_of(plain, 1, given, "tiny") == accuracy.settings_of(plain, 1, {"epochs": 3}, "tiny")
    assert accuracy.settings_of(regenerated, 1, given, "tiny")["overrides"]["regen_data_path"] == "out"


def test_a_stopped_row_resumes_under_a_data_path_written_another_way(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    store = str(tmp_path / "store")
    calls = []

    def stopped(model, dataset, config_dict, per_user=False):  # a run killed after its first epoch's checkpoint
        calls.append(config_dict)
        os.makedirs(config_dict["checkpoint_dir"], exist_ok=True)
        open(os.path.join(config_dict["checkpoint_dir"], "SASRec-x-last.pth"), "w").close()
        raise KeyboardInterrupt

    def finished(model, dataset, config_dict, per_user=False):
        calls.append(config_dict)
        metrics = {"ndcg@10": 0.1}
        return {"test_result": metrics, "best_valid_result": metrics, "train_time_s": 1.0, "epochs_run": 2,
                "saved_model_file": None}  # fmt: skip

    runs = [Run("SASRec", "SASRec")]
    with pytest.raises(KeyboardInterrupt):
        run_all(runs, "tiny", [1], {"data_path": "data"}, store, stopped, lambda m: None)
    assert len(glob.glob(os.path.join(store, "*" + accuracy.STARTED))) == 1  # no result, its settings
    run_all(runs, "tiny", [1], {"data_path": str(tmp_path / "data") + "/"}, store, finished, lambda m: None)
    assert calls[1]["checkpoint_dir"] == calls[0]["checkpoint_dir"]  # the same row, not a new one
    assert calls[1]["resume_path"] == os.path.join(calls[0]["checkpoint_dir"], "SASRec-x-last.pth")
    assert calls[1]["data_path"].startswith(str(tmp_path))  # resumed with the paths it was given now
    run_all(runs, "tiny", [1], {"data_path": str(tmp_path)}, store, finished, lambda m: None)
    assert calls[2]["checkpoint_dir"] != calls[0]["checkpoint_dir"] and "resume_path" not in calls[2]


def test_a_regenerated_row_stored_before_the_reference_recipe_is_found_only_under_its_recipe(tmp_path):
    run = Run("SASRec+regen", "SASRec", regenerated=True)
    stored_settings = accuracy.settings_of(run, 1, {}, "tiny")
    for key in ADDED_REGEN_KEYS:  # as a row stored before the keys existed recorded its settings
        stored_settings["overrides"].pop(key)
    stored = accuracy.result_path(str(tmp_path), stored_settings)
    with open(stored, "w", encoding="utf-8") as f:
        json.dump({"settings": stored_settings, "test_result": {}}, f)
    now = accuracy.settings_of(run, 1, {}, "tiny")  # the Regenerator's defaults: the reference's recipe
    assert now["overrides"]["regen_original_copies"] == 2 and now["overrides"]["regen_source_tokens"] is True
    assert accuracy.stored_result_path(str(tmp_path), now) != stored  # another set: the row runs again
    pinned = accuracy.settings_of(run, 1, dict(table1.RECIPE), "tiny")  # Table 1's recipe: the stored one
    assert accuracy.stored_result_path(str(tmp_path), pinned) == stored
    plain = accuracy.settings_of(Run("SASRec", "SASRec"), 1, dict(table1.RECIPE), "tiny")
    assert not set(ADDED_REGEN_KEYS) & set(plain["overrides"])  # a row on the original data never records them


def test_the_reference_protocol_row_regenerates_from_its_own_sasrec_with_the_regenerators_settings(
    tiny, tmp_path, monkeypatch
):
    seen = {}

    def recording_regenerate(dataset, config_dict=None, control=False):
        seen.update(config_dict)
        raise ConfigError("stop here")  # what the regenerator is given is all this test needs

    monkeypatch.setattr(accuracy, "regenerate", recording_regenerate)
    runs = select_runs(["SASRec (DR4SR protocol)", "SASRec+regen (DR4SR protocol)"])
    settings = {**tiny, "epochs": 1, "regen_data_path": str(tmp_path / "regen")}
    with pytest.raises(ConfigError, match="stop here"):
        run_all(runs, "tiny", [1], settings, str(tmp_path / "store"), run_recbole_rag, lambda m: None)
    [protocol_sasrec] = glob.glob(str(tmp_path / "store" / "SASRec__DR4SR_protocol_-seed1-??????????.json"))
    with open(protocol_sasrec, encoding="utf-8") as f:
        stored = json.load(f)
    assert stored["settings"]["overrides"]["loss_type"] == "BCE"  # the protocol row trained with BCE
    assert seen["regen_item_embedding"] == stored["saved_model_file"]  # its item table starts the regenerator
    assert not {"loss_type", "train_neg_sample_args", "eval_mask_history"} & set(seen)  # the target's protocol
    assert seen["inner_size"] == tiny["inner_size"]  # ... but a setting of every row reaches the regenerator
    # its set lies in a folder of its own: another item table than the SASRec+regen row's
    assert seen["regen_data_path"].endswith(os.path.join("seed1", "item_table=SASRec__DR4SR_protocol_"))


def test_a_recipe_other_than_the_defaults_writes_its_set_in_a_folder_of_its_own(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(
        accuracy, "regenerate", lambda dataset, config_dict=None, control=False: seen.append(config_dict)
    )
    monkeypatch.setattr(accuracy, "regenerator_dir", lambda *args: str(tmp_path / "regenerator"))
    run = Run("SASRec+regen", "SASRec", regenerated=True)
    base = {"seed": 1, "regen_data_path": str(tmp_path), "regen_item_embedding": "given.pth"}
    for config in (base, {**base, **table1.RECIPE}):
        accuracy.regenerated_dataset(run, config, "tiny", 1, None, str(tmp_path / "store"), log=lambda m: None)
    assert seen[0]["regen_data_path"] == os.path.join(str(tmp_path), "seed1")  # the defaults: the base folder
    assert seen[1]["regen_data_path"] == os.path.join(
        str(tmp_path), "seed1", "regen_original_copies=1-regen_source_tokens=False"
    )
