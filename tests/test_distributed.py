import pytest

from recbole_rag import Config
from recbole_rag.distributed import run_distributed
from recbole_rag.errors import ConfigError


def test_two_gloo_processes_train_one_model_and_agree(tiny):
    # run_recbole_rag in 2 CPU processes; the trainer checks after fit that both replicas hold
    # the same weights (they would not without the all-reduced gradients), else the run fails.
    results = run_distributed("SASRec", "tiny", nproc=2, config_dict={**tiny, "epochs": 2})
    assert len(results) == 2
    rank0, rank1 = results
    assert rank0["test_result"] == rank1["test_result"]
    assert rank0["best_valid_result"] == rank1["best_valid_result"]
    assert rank0["saved_model_file"] == rank1["saved_model_file"]  # rank 0's checkpoint, tested by both
    assert all(0.0 <= v <= 1.0 for v in rank0["test_result"].values())


def test_multi_process_runs_refuse_bad_settings(tiny):
    with pytest.raises(ConfigError, match="nproc must be an integer >= 2"):
        run_distributed("SASRec", "tiny", nproc=1, config_dict=tiny)
    with pytest.raises(ConfigError, match="trains in several stages"):
        run_distributed("RaSeRec", "tiny", nproc=2, config_dict=tiny)
    with pytest.raises(ConfigError, match="world_size, ip, port"):
        Config("SASRec", "tiny", config_dict={**tiny, "local_rank": 0})
