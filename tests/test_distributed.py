import numpy as np
import pytest

from recbole_rag import Config
from recbole_rag.distributed import run_distributed
from recbole_rag.errors import ConfigError
from recbole_rag.memory import MemoryBank
from recbole_rag.memory.sharded import ShardedMemoryBank


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


def _clustered(n, dim, seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, dim))
    return (centres[rng.integers(0, 8, n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_sharded_bank_returns_what_one_flat_bank_returns(metric):
    dim = 16
    flat, sharded = MemoryBank(dim, metric=metric), ShardedMemoryBank(dim, 3, metric=metric)
    for part, n in enumerate([50, 7, 120]):  # several adds: each is split over the shards
        keys, values = _clustered(n, dim, part), np.arange(n) + 100 * part
        np.testing.assert_array_equal(flat.add(keys, values), sharded.add(keys, values))
    queries = _clustered(20, dim, 9)
    exclude = np.stack([np.arange(20) * 8, np.arange(20) * 8 + 30], 1)  # ranges crossing shard borders
    for ex in (None, exclude, np.arange(20) * 5):
        want, got = flat.search(queries, 10, ex), sharded.search(queries, 10, ex)
        np.testing.assert_array_equal(got[3], want[3])
        np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(got[2], want[2])
        np.testing.assert_array_equal(got[1], want[1])
    assert len(sharded) == len(flat) == 177


def test_sharded_bank_bad_input():
    with pytest.raises(ConfigError, match="n_shards"):
        ShardedMemoryBank(4, 0)
    bank = ShardedMemoryBank(4, 2)
    with pytest.raises(ValueError, match="empty"):
        bank.search(np.zeros((1, 4)), 1)
    with pytest.raises(ValueError, match="3 keys but 2 values"):
        bank.add(np.zeros((3, 4)), [1, 2])
    bank.add(np.eye(4), [1, 2, 3, 4])
    with pytest.raises(ValueError, match="k must be in"):
        bank.search(np.ones((1, 4)), 5)
