"""load_data_and_model / recommend: a saved run comes back as it was tested."""

import os

import numpy as np
import pytest
import torch
from recbole.utils.case_study import full_sort_topk

from recbole_rag import get_trainer, run_recbole_rag
from recbole_rag.cli import main
from recbole_rag.errors import CheckpointError, ConfigError, DatasetError
from recbole_rag.inference import evaluate, history_queries, load_data_and_model, recommend, sequences


def _test_metrics(loaded):
    config, model = loaded[0], loaded[1]
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    return trainer.evaluate(loaded[5], load_best_model=False)


def test_evaluate_command_prints_the_runs_test_result(raserec_run, capsys):
    assert evaluate(raserec_run["saved_model_file"]) == raserec_run["test_result"]
    assert main(["evaluate", f"--checkpoint={raserec_run['saved_model_file']}"]) == 0
    assert f"ndcg@10 : {raserec_run['test_result']['ndcg@10']}" in capsys.readouterr().out


def test_raserec_checkpoint_reproduces_its_test_metrics_with_recboles_topk(raserec_run):
    loaded = load_data_and_model(raserec_run["saved_model_file"])
    config, model, dataset, train, valid, test = loaded
    assert model.stage == "raft"
    assert len(model.memory) == len(train.dataset) + len(valid.dataset)  # the bank the test used
    assert _test_metrics(loaded) == raserec_run["test_result"]
    uids = test.dataset.inter_feat[dataset.uid_field][:3].numpy()
    scores, items = full_sort_topk(uids, model, test, k=5)
    assert items.shape == (3, 5) and (items > 0).all()


def test_a_missing_bank_is_rebuilt_identically_for_a_frozen_backbone(raserec_run, tmp_path):
    checkpoint = torch.load(raserec_run["saved_model_file"], weights_only=True)
    bank_file = checkpoint["other_parameter"]["memory_file"]
    assert os.path.isfile(bank_file)
    checkpoint["other_parameter"]["memory_file"] = str(tmp_path / "gone.npz")
    moved = tmp_path / "moved.pth"
    torch.save(checkpoint, moved)
    loaded = load_data_and_model(str(moved))
    assert _test_metrics(loaded) == raserec_run["test_result"]

    checkpoint["config"]["freeze_backbone"] = False  # a fine-tuned backbone cannot rebuild its bank
    torch.save(checkpoint, moved)
    with pytest.raises(CheckpointError, match="cannot be rebuilt"):
        load_data_and_model(str(moved))


def test_recbole_model_checkpoint_loads_and_reproduces(tiny):
    result = run_recbole_rag("SASRec", "tiny", config_dict=tiny)
    loaded = load_data_and_model(result["saved_model_file"])
    assert type(loaded[1]).__name__ == "SASRec"
    assert _test_metrics(loaded) == result["test_result"]


def test_recommend_gives_item_tokens_after_the_whole_history(raserec_run):
    found = recommend(raserec_run["saved_model_file"], ["u1", "u7"], k=4)
    assert list(found) == ["u1", "u7"]
    for items in found.values():
        assert len(items) == 4
        assert all(token.startswith("i") for token, _ in items)
        scores = [score for _, score in items]
        assert scores == sorted(scores, reverse=True)
    # the query is the whole history: it ends with the user's last interaction, the test item
    config, model, dataset, _, _, test = load_data_and_model(raserec_run["saved_model_file"])
    uid = dataset.field2token_id[dataset.uid_field]["u1"]
    query = history_queries(test, [uid])
    last = query["item_id_list"][0, query["item_length"][0] - 1]
    lines = open(os.path.join(config["data_path"], "tiny.inter")).read().splitlines()
    assert (
        dataset.id2token(dataset.iid_field, [int(last)])[0]
        == [line for line in lines if line.startswith("u1\t")][-1].split("\t")[1]
    )


def test_recommend_leaves_out_what_the_user_has_unless_told_to_keep_it(raserec_run):
    _, _, dataset, _, _, _ = load_data_and_model(raserec_run["saved_model_file"])
    feat = dataset.inter_feat
    users = ["u1", "u2", "u3", "u4"]
    had = {
        user: set(dataset.id2token(dataset.iid_field, feat[dataset.iid_field][feat[dataset.uid_field] == uid]))
        for user, uid in zip(users, dataset.token2id(dataset.uid_field, users))
    }
    kept = recommend(raserec_run["saved_model_file"], users, k=10, exclude_seen=False)
    assert any(token in had[user] for user in users for token, _ in kept[user])  # the model does rank them
    found = recommend(raserec_run["saved_model_file"], users, k=10)
    for user in users:
        assert len(found[user]) == 10 and not {token for token, _ in found[user]} & had[user]
        fresh = [item for item in kept[user] if item[0] not in had[user]]
        assert found[user][: len(fresh)] == fresh  # the same ranking, seen items skipped


def test_recommend_cli_prints_one_line_per_user(raserec_run, capsys):
    assert main(["recommend", f"--checkpoint={raserec_run['saved_model_file']}", "--users=u2,u3", "--k=3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["u2", "u3"]
    assert all(len(line.split("\t")[1].split()) == 3 for line in lines)
    assert main(["recommend", f"--checkpoint={raserec_run['saved_model_file']}", "--users=u2", "--keep_seen"]) == 0
    assert len(capsys.readouterr().out.split("\t")[1].split()) == 10


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--users=nobody"], "User(s) nobody not in dataset tiny"),
        (["--users=u1", "--k=0"], "k must be an integer >= 1"),
        (["--users=u1", "--k=500"], "more than the 30 items"),
        (["--users=,"], "--users needs at least one user token"),
    ],
)
def test_recommend_cli_bad_input_gives_one_line(raserec_run, capsys, argv, message):
    assert main(["recommend", f"--checkpoint={raserec_run['saved_model_file']}", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_checkpoint_is_not_tested_on_data_that_changed_since_its_run(tiny, tmp_path, capsys):
    result = run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "epochs": 1})
    inter = tmp_path / "data" / "tiny" / "tiny.inter"
    lines = inter.read_text().splitlines()
    assert evaluate(result["saved_model_file"]) == result["test_result"]
    inter.write_text("\n".join(line for line in lines if not line.startswith("u7\t")) + "\n")  # a user's rows lost
    with pytest.raises(CheckpointError, match="trained on another version of dataset tiny"):
        load_data_and_model(result["saved_model_file"])
    assert main(["evaluate", f"--checkpoint={result['saved_model_file']}"]) == 2
    assert "restore the files it ran on" in capsys.readouterr().err


def test_load_refuses_what_is_not_a_run_checkpoint(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a whole checkpoint"):
        load_data_and_model(str(text))
    bare = tmp_path / "bare.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, bare)
    with pytest.raises(CheckpointError, match="holds no run settings"):
        load_data_and_model(str(bare))
    with pytest.raises(CheckpointError, match="No checkpoint file"):
        load_data_and_model(str(tmp_path / "missing.pth"))


def test_unknown_user_is_a_dataset_error(raserec_run):
    with pytest.raises(DatasetError, match="its users look like"):
        recommend(raserec_run["saved_model_file"], ["u1", "zz"], k=2)
    with pytest.raises(ConfigError, match="at least one user token"):
        recommend(raserec_run["saved_model_file"], [], k=2)
    with pytest.raises(ConfigError, match="not one string"):
        recommend(raserec_run["saved_model_file"], "u12", k=2)
    assert np.isfinite([s for _, s in recommend(raserec_run["saved_model_file"], ["u1"], k=2)["u1"]]).all()


def test_new_pairs_enter_the_bank_and_change_recommendations_without_training(raserec_run):
    config, model, dataset, _, _, _ = load_data_and_model(raserec_run["saved_model_file"])
    query = sequences(dataset, config, [["i5", "i6", "i7"]])
    before = model.full_sort_predict(query)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    size = len(model.memory)
    # many users went from this history to i20: the bank learns it, the weights do not change
    model.add_to_memory(sequences(dataset, config, [["i5", "i6", "i7"]] * 40, ["i20"] * 40))
    after = model.full_sort_predict(query)
    item = dataset.field2token_id[dataset.iid_field]["i20"]
    assert len(model.memory) == size + 40
    assert after[0, item] > before[0, item]
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    with pytest.raises(DatasetError, match="Item\\(s\\) i999 not in dataset tiny"):
        sequences(dataset, config, [["i1", "i999"]])
    with pytest.raises(DatasetError, match="give one each"):
        sequences(dataset, config, [["i1"], ["i2"]], ["i3"])
    with pytest.raises(DatasetError, match="at least one item"):
        sequences(dataset, config, [["i1"], []])


def test_a_fine_tuned_backbone_reloads_with_its_saved_bank(tiny):
    # the bank's keys are stage 1's, the checkpoint's weights RAFT's: the bank file is the truth,
    # and the validation pairs are encoded by the weights under test, as the run encoded them
    result = run_recbole_rag("RaSeRec", "tiny", config_dict={**tiny, "retrieval_k": 5, "freeze_backbone": False})
    loaded = load_data_and_model(result["saved_model_file"])
    assert _test_metrics(loaded) == result["test_result"]


def test_what_cannot_be_rebuilt_or_belongs_to_other_items_is_refused(raserec_run, tmp_path):
    checkpoint = torch.load(raserec_run["saved_model_file"], weights_only=True)
    moved = tmp_path / "changed.pth"
    patterns = {**checkpoint, "config": {**checkpoint["config"], "memory_source": "patterns", "freeze_backbone": False}}
    torch.save(patterns, moved)
    with pytest.raises(CheckpointError, match="pattern bank, which is not saved"):
        load_data_and_model(str(moved))
    torch.save({**checkpoint, "item_vocabulary": "0" * 16}, moved)
    with pytest.raises(CheckpointError, match="whose item ids are not those of tiny"):
        load_data_and_model(str(moved))


def test_saved_settings_are_read_as_literals_never_run(raserec_run, tmp_path):
    checkpoint = torch.load(raserec_run["saved_model_file"], weights_only=True)
    code = "__import__('pathlib').Path('ran').touch()"
    torch.save({**checkpoint, "config": {**checkpoint["config"], "learner": code}}, tmp_path / "code.pth")
    config = load_data_and_model(str(tmp_path / "code.pth"))[0]
    assert config["learner"] == code and not (tmp_path / "ran").exists()


def test_recommend_needs_a_sequential_model(tiny):
    result = run_recbole_rag("BPR", "tiny", config_dict={**tiny, "epochs": 1})
    with pytest.raises(ConfigError, match="BPR is not one"):
        recommend(result["saved_model_file"], iter(["u1"]), k=2)
