"""eval_mask_history: the ICLRec / DR4SR evaluation line, where the items of a user's input
sequence are left out of the ranking; off, RecBole's line exactly."""

import pytest
import torch

from recbole_rag import get_trainer, run_recbole_rag
from recbole_rag.inference import evaluate, load_data_and_model
from recbole_rag.trainer.history_mask import history_masked


def ranked(checkpoint, mask):
    """The top-10 items and the input sequences of the first test batch, as the trainer scores them."""
    config, model, _, _, _, test_data = load_data_and_model(checkpoint, {"eval_mask_history": mask})
    trainer_class = get_trainer(config["MODEL_TYPE"], config["model"])
    trainer = (history_masked(trainer_class) if mask else trainer_class)(config, model)
    trainer.tot_item_num = test_data._dataset.item_num
    interaction, scores, _, _ = trainer._full_sort_batch_eval(next(iter(test_data)))
    return scores.topk(10).indices, interaction[config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]]


def overlaps(top, sequences):
    return [set(t.tolist()) & (set(s.tolist()) - {0}) for t, s in zip(top, sequences)]


@pytest.fixture(params=["SASRec", "RaSeRec"])
def checkpoint(request, tiny, raserec_run):
    """A checkpoint of RecBole's SASRec and one of our RaSeRec."""
    if request.param == "RaSeRec":
        return raserec_run["saved_model_file"]
    return run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "epochs": 2})["saved_model_file"]


def test_a_seen_item_never_reaches_the_top_k(checkpoint):
    top, sequences = ranked(checkpoint, mask=False)
    assert any(overlaps(top, sequences))  # on RecBole's line the model does rank what the user has
    top, sequences = ranked(checkpoint, mask=True)
    assert not any(overlaps(top, sequences))


def test_off_is_recboles_line_and_on_is_another(checkpoint):
    plain = evaluate(checkpoint)
    assert evaluate(checkpoint, {"eval_mask_history": False}) == plain
    masked, per_user = evaluate(checkpoint, {"eval_mask_history": True}, per_user=True)
    assert masked != plain
    assert abs(float(per_user["ndcg@10"].mean()) - masked["ndcg@10"]) < 5e-5


def test_training_validates_on_the_masked_line_too(tiny):
    masked = run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "epochs": 1, "eval_mask_history": True})
    plain = run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "epochs": 1})
    assert masked["best_valid_result"] != plain["best_valid_result"]
    assert evaluate(masked["saved_model_file"]) == masked["test_result"]  # the checkpoint keeps its line
    assert torch.load(masked["saved_model_file"], weights_only=True)["config"]["eval_mask_history"] is True
