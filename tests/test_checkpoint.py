import pytest
import torch
from recbole.data import data_preparation

from recbole_rag import Config, get_model, get_trainer
from recbole_rag.data import load_dataset
from recbole_rag.errors import CheckpointError
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
