import os
import shutil

import pytest
import torch
from recbole.data import data_preparation

from recbole_rag import Config, get_model, get_trainer, run_recbole_rag
from recbole_rag.checkpoint import drop_training_state, last_file_of
from recbole_rag.data import load_dataset
from recbole_rag.errors import CheckpointError
from recbole_rag.inference import evaluate
from recbole_rag.trainer import load_checkpoint


def _trainer(tiny, model_name="DuoRec"):
    config = Config(model_name, "tiny", config_dict=tiny)
    train, valid, test = data_preparation(config, load_dataset(config))
    model = get_model(model_name)(config, train.dataset)
    return get_trainer(config["MODEL_TYPE"], model_name)(config, model), train, valid, test


def test_checkpoint_round_trip_with_weights_only(tiny):
    trainer, train, valid, _ = _trainer(tiny)
    trainer.fit(train, valid, saved=True)
    checkpoint = torch.load(trainer.saved_model_file, weights_only=True)
    assert checkpoint["config"]["model"] == "DuoRec" and checkpoint["epoch"] >= 0

    fresh, *_ = _trainer(tiny)
    assert not torch.equal(fresh.model.encoder.item_embedding.weight, trainer.model.encoder.item_embedding.weight)
    fresh.resume_checkpoint(trainer.saved_model_file)
    assert fresh.start_epoch == checkpoint["epoch"] + 1
    for name, tensor in checkpoint["state_dict"].items():
        assert torch.equal(fresh.model.state_dict()[name], tensor), name


def test_pickled_recbole_checkpoint_is_refused_not_unsafely_loaded(tiny, tmp_path):
    trainer, *_ = _trainer(tiny)
    path = tmp_path / "recbole-style.pth"
    torch.save({"config": trainer.config, "state_dict": trainer.model.state_dict()}, path)
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(path)


def test_missing_checkpoint_and_checkpoint_of_another_model(tiny, tmp_path):
    with pytest.raises(CheckpointError, match="No checkpoint file"):
        load_checkpoint(tmp_path / "nope.pth")
    sasrec, train, valid, _ = _trainer(tiny, "SASRec")
    sasrec.fit(train, valid, saved=True)
    duorec, *_ = _trainer(tiny)
    with pytest.raises(CheckpointError, match="saved by model SASRec, not DuoRec"):
        duorec.resume_checkpoint(sasrec.saved_model_file)


def test_two_runs_named_in_the_same_second_keep_their_own_checkpoints(tiny):
    first, train, valid, test = _trainer(tiny)
    second, *_ = _trainer(tiny)
    second.saved_model_file = first.saved_model_file  # RecBole's name: model and clock second
    first.fit(train, valid, saved=True)
    with open(first.saved_model_file, "rb") as f:
        first_bytes = f.read()
    second.fit(train, valid, saved=True)
    assert second.saved_model_file != first.saved_model_file
    with open(first.saved_model_file, "rb") as f:
        assert f.read() == first_bytes  # the second run wrote beside it, not over it
    assert load_checkpoint(second.saved_model_file)["config"]["model"] == "DuoRec"


@pytest.mark.parametrize("model_name", ["SASRec", "DuoRec"])
def test_a_run_stopped_after_epoch_k_resumes_as_if_never_stopped(tiny, model_name):
    settings = {**tiny, "epochs": 4, "stopping_step": 10}
    whole = run_recbole_rag(model_name, "tiny", config_dict=settings)
    part = run_recbole_rag(model_name, "tiny", config_dict={**settings, "epochs": 2})
    last = last_file_of(part["saved_model_file"])
    assert load_checkpoint(last)["epoch"] == 1
    resumed = run_recbole_rag(model_name, "tiny", config_dict={**settings, "resume_path": last})

    assert resumed["epochs_run"] == whole["epochs_run"] == 4
    assert resumed["best_epoch"] == whole["best_epoch"]
    assert resumed["best_valid_result"] == whole["best_valid_result"]
    assert resumed["test_result"] == whole["test_result"]
    whole_weights = load_checkpoint(last_file_of(whole["saved_model_file"]))["state_dict"]
    resumed_weights = load_checkpoint(last_file_of(resumed["saved_model_file"]))["state_dict"]
    assert all(torch.equal(whole_weights[k], resumed_weights[k]) for k in whole_weights)


@pytest.mark.parametrize("model_name", ["DuoRec", "SASRec"])
def test_resume_keeps_the_early_stopping_counter_and_best_score(tiny, model_name):
    settings = {**tiny, "epochs": 6, "stopping_step": 2}
    part = run_recbole_rag(model_name, "tiny", config_dict={**settings, "epochs": 1})
    last = last_file_of(part["saved_model_file"])
    state = load_checkpoint(last)
    state.update(cur_step=2, best_valid_score=2.0)  # two epochs without gain, a best none can beat
    torch.save(state, last)
    resumed = run_recbole_rag(model_name, "tiny", config_dict={**settings, "resume_path": last})
    assert resumed["stopped_early"] and resumed["epochs_run"] == 2 and resumed["best_epoch"] == 0
    assert resumed["best_valid_score"] == 2.0


def test_a_last_checkpoint_alone_carries_its_run_elsewhere(tiny):
    settings = {**tiny, "epochs": 4, "stopping_step": 10}
    whole = run_recbole_rag("SASRec", "tiny", config_dict=settings)
    part = run_recbole_rag("SASRec", "tiny", config_dict={**settings, "epochs": 2})
    last = last_file_of(part["saved_model_file"])
    os.remove(part["saved_model_file"])  # only the -last was kept: it holds the best epoch's weights too
    resumed = run_recbole_rag("SASRec", "tiny", config_dict={**settings, "resume_path": last})
    assert resumed["best_epoch"] == whole["best_epoch"] and resumed["test_result"] == whole["test_result"]


def test_an_older_last_checkpoint_whose_best_file_is_gone_is_refused(tiny):
    part = run_recbole_rag("DuoRec", "tiny", config_dict={**tiny, "epochs": 1})
    os.remove(part["saved_model_file"])
    last = last_file_of(part["saved_model_file"])
    state = load_checkpoint(last)
    del state["best_state"]  # as -last checkpoints were written before they carried it
    torch.save(state, last)
    with pytest.raises(CheckpointError, match="best checkpoint .* is gone"):
        run_recbole_rag("DuoRec", "tiny", config_dict={**tiny, "resume_path": last})


def test_a_run_folder_moved_elsewhere_resumes_from_the_best_file_beside_its_last(tiny, tmp_path):
    part = run_recbole_rag("DuoRec", "tiny", config_dict={**tiny, "epochs": 1})
    moved = tmp_path / "moved"
    shutil.move(os.path.dirname(part["saved_model_file"]), moved)
    last = moved / os.path.basename(last_file_of(part["saved_model_file"]))
    resumed = run_recbole_rag("DuoRec", "tiny", config_dict={**tiny, "epochs": 2, "resume_path": str(last)})
    assert resumed["epochs_run"] == 2
    assert resumed["saved_model_file"] == str(moved / os.path.basename(part["saved_model_file"]))


def _files(folder):
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


def test_a_copy_of_a_last_checkpoint_resumes_without_touching_the_original_run(tiny, tmp_path):
    part = run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "epochs": 1})
    original = os.path.dirname(part["saved_model_file"])
    before = _files(original)
    copy = tmp_path / "elsewhere" / "copy-last.pth"
    copy.parent.mkdir()
    shutil.copyfile(last_file_of(part["saved_model_file"]), copy)
    settings = {**tiny, "epochs": 3, "checkpoint_dir": str(copy.parent), "resume_path": str(copy)}
    resumed = run_recbole_rag("SASRec", "tiny", config_dict=settings)
    assert resumed["epochs_run"] == 3 and os.path.dirname(resumed["saved_model_file"]) == str(copy.parent)
    assert _files(original) == before


def test_resuming_a_finished_run_trains_nothing_and_keeps_its_best(tiny):
    settings = {**tiny, "epochs": 2, "stopping_step": 0}
    part = run_recbole_rag("SASRec", "tiny", config_dict={**settings, "epochs": 1})
    last = last_file_of(part["saved_model_file"])
    state = load_checkpoint(last)
    state.update(cur_step=1, best_valid_score=2.0)  # it had stopped early: one epoch past stopping_step 0
    torch.save(state, last)
    best = open(part["saved_model_file"], "rb").read()
    resumed = run_recbole_rag("SASRec", "tiny", config_dict={**settings, "resume_path": last})
    assert resumed["stopped_early"] and resumed["best_epoch"] == 0
    assert open(part["saved_model_file"], "rb").read() == best
    assert resumed["test_result"] == part["test_result"]


def test_a_weights_only_checkpoint_evaluates_but_resumes_only_a_finished_run(tiny):
    part = run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "epochs": 2})
    last = last_file_of(part["saved_model_file"])
    assert drop_training_state(part["saved_model_file"]) > 0 and drop_training_state(last) > 0
    assert "optimizer" not in load_checkpoint(last) and drop_training_state(last) == 0
    assert evaluate(part["saved_model_file"]) == part["test_result"]
    finished = run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "epochs": 2, "resume_path": last})
    assert finished["test_result"] == part["test_result"]  # nothing left to train: its best epoch is tested
    with pytest.raises(CheckpointError, match="holds weights only .* start from its weights with pretrained_path"):
        run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "epochs": 4, "resume_path": last})


def test_a_changed_learning_rate_on_resume_is_said_to_be_kept(tiny):
    part = run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "epochs": 1})
    last = last_file_of(part["saved_model_file"])
    with pytest.warns(UserWarning, match=r"optimizer keeps learning_rate 0.001 \(this command: 0.01\)"):
        run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "epochs": 2, "resume_path": last, "learning_rate": 0.01})


def test_pretrained_path_starts_a_recbole_model_from_its_weights_at_epoch_0(tiny):
    base = run_recbole_rag("SASRec", "tiny", config_dict=tiny)
    trainer, train, valid, _ = _trainer({**tiny, "epochs": 0, "pretrained_path": base["saved_model_file"]}, "SASRec")
    trainer.fit(train, valid, saved=False)
    saved = torch.load(base["saved_model_file"], weights_only=True)["state_dict"]
    assert trainer.start_epoch == 0
    assert all(torch.equal(v, saved[k]) for k, v in trainer.model.state_dict().items())
    both = {**tiny, "pretrained_path": base["saved_model_file"], "resume_path": base["saved_model_file"]}
    with pytest.raises(CheckpointError, match="not both"):
        run_recbole_rag("SASRec", "tiny", config_dict=both)
    with pytest.raises(CheckpointError, match="holds a SASRec model, not GRU4Rec"):
        run_recbole_rag("GRU4Rec", "tiny", config_dict={**tiny, "pretrained_path": base["saved_model_file"]})


def test_a_checkpoint_of_another_datasets_items_is_refused(tiny, tmp_path):
    from conftest import write_tiny_dataset

    write_tiny_dataset(tmp_path / "data", name="other", seed=5)  # same item count, other id order
    other = run_recbole_rag("SASRec", "other", config_dict={**tiny, "epochs": 1})
    path = other["saved_model_file"]
    for model, key in [("SASRec", "pretrained_path"), ("SASRec", "resume_path"), ("RaSeRec", "pretrained_path")]:
        with pytest.raises(CheckpointError, match="trained on dataset other, whose item ids are not those of tiny"):
            run_recbole_rag(model, "tiny", config_dict={**tiny, key: path, "retrieval_k": 3})
    # a checkpoint older than the fingerprint: judged by its dataset's name
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["item_vocabulary"]
    torch.save(checkpoint, tmp_path / "old.pth")
    with pytest.raises(CheckpointError, match="trained on dataset other"):
        run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "pretrained_path": str(tmp_path / "old.pth")})
    run_recbole_rag("SASRec", "other", config_dict={**tiny, "epochs": 1, "pretrained_path": str(tmp_path / "old.pth")})
