"""The device-resident bank (recbole_rag/memory/device.py): the faiss flat bank's neighbours as
tensors, its file format, and RaSeRec on it (on the CPU here; on CUDA it is the default)."""

import warnings

import numpy as np
import pytest
import torch

from recbole_rag import Config, get_model, run_recbole_rag
from recbole_rag.data import load_dataset
from recbole_rag.errors import ConfigError
from recbole_rag.memory import MemoryBank, device
from recbole_rag.memory.device import DeviceMemoryBank
from recbole_rag.model.sequential_recommender import raserec


@pytest.mark.parametrize("entries_at_a_time", [262_144, 7, 50])  # whole, and in chunks smaller than k
@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_device_bank_returns_the_flat_faiss_banks_neighbours(metric, entries_at_a_time, monkeypatch):
    monkeypatch.setattr(device, "SEARCH_ENTRIES", entries_at_a_time)
    rng = np.random.default_rng(0)
    faiss_bank, device_bank = MemoryBank(8, metric=metric), DeviceMemoryBank(8, metric)
    queries = rng.normal(size=(30, 8)).astype(np.float32)
    ranges = np.stack([np.arange(30) * 3, np.arange(30) * 3 + np.arange(30) % 5], 1)
    for _ in range(3):  # adds after searches: the bank grows without a rebuild
        keys, values = rng.normal(size=(41, 8)).astype(np.float32), rng.integers(1, 50, 41)
        np.testing.assert_array_equal(faiss_bank.add(keys, values), device_bank.add(keys, values))
        for exclude in (None, ranges, torch.from_numpy(ranges), np.arange(30)):
            want, got = (
                faiss_bank.search(queries, 6, exclude),
                device_bank.search(torch.from_numpy(queries), 6, exclude),
            )
            assert all(torch.is_tensor(part) for part in got)
            np.testing.assert_array_equal(got[3].numpy(), want[3])
            np.testing.assert_allclose(got[0].numpy(), want[0], atol=1e-5)
            np.testing.assert_allclose(got[1].numpy(), want[1], atol=1e-6)
            np.testing.assert_array_equal(got[2].numpy(), want[2])
    keys, values = device_bank.entries(torch.tensor([[0, -1]]))
    assert (
        torch.equal(keys[0, 1], torch.zeros(8)) and values[0, 1] == 0 and torch.equal(keys[0, 0], device_bank.keys[0])
    )


def test_a_device_bank_saves_as_and_loads_from_the_faiss_banks_file(tmp_path):
    bank = DeviceMemoryBank(4, "cosine")
    bank.add(np.eye(4, dtype=np.float32), [1, 2, 3, 4])
    bank.save(tmp_path / "bank.npz")
    loaded = MemoryBank.load(tmp_path / "bank.npz")
    np.testing.assert_array_equal(loaded.values, [1, 2, 3, 4])
    back = DeviceMemoryBank.from_faiss(loaded, "cpu")
    assert torch.equal(back.keys, bank.keys) and back.metric == "cosine"


@pytest.mark.parametrize("entries_at_a_time", [262_144, 2])
def test_a_query_with_fewer_entries_left_than_k_gets_empty_slots_on_the_device(entries_at_a_time, monkeypatch):
    monkeypatch.setattr(device, "SEARCH_ENTRIES", entries_at_a_time)
    bank = DeviceMemoryBank(2)
    bank.add(np.eye(2, dtype=np.float32).repeat(3, 0), np.arange(1, 7))
    _, _, values, ids = bank.search(torch.ones(1, 2), 3, torch.tensor([[0, 4]]))  # a tensor: no host check
    assert ids[0].tolist()[:2] in ([4, 5], [5, 4]) and ids[0, 2] == -1 and values[0, 2] == 0


def test_raserec_on_the_device_bank_ranks_as_on_faiss(tiny):
    settings = {**tiny, "retrieval_k": 5, "epochs": 1, "raft_epochs": 1}
    on_faiss = run_recbole_rag("RaSeRec", "tiny", config_dict=settings)
    on_torch = run_recbole_rag("RaSeRec", "tiny", config_dict={**settings, "memory_backend": "torch"})
    for metric, value in on_faiss["test_result"].items():
        assert on_torch["test_result"][metric] == pytest.approx(value, abs=1e-4), metric
    also_unfrozen = {**settings, "memory_backend": "torch", "freeze_backbone": False}  # a search every step
    assert 0 <= run_recbole_rag("RaSeRec", "tiny", config_dict=also_unfrozen)["test_result"]["ndcg@10"] <= 1


def test_auto_is_faiss_on_a_cpu_and_torch_refuses_an_approximate_index(tiny):
    config = Config("RaSeRec", "tiny", config_dict=tiny)
    model = get_model("RaSeRec")(config, load_dataset(config).build()[0])
    assert model.memory_backend() == "faiss" and isinstance(model.new_memory(), MemoryBank)
    with pytest.raises(ConfigError, match="memory_backend: torch searches exactly: memory_index must be flat"):
        run_recbole_rag("RaSeRec", "tiny", config_dict={**tiny, "memory_backend": "torch", "memory_index": "hnsw"})


def test_an_approximate_index_on_cuda_says_once_that_it_searches_on_the_host(tiny):
    config = Config("RaSeRec", "tiny", config_dict={**tiny, "memory_index": "ivf"})
    model = get_model("RaSeRec")(config, load_dataset(config).build()[0])
    assert model.memory_backend() == "faiss"  # on a CPU nothing to say
    model.config["device"] = torch.device("cuda")  # as Config sets it on a GPU machine
    raserec._warn_host_search.cache_clear()
    with pytest.warns(UserWarning, match="memory_index ivf on a CUDA model is searched by faiss on the CPU"):
        assert model.memory_backend() == "faiss"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.memory_backend()  # once per process
    for exact in ("flat", "auto"):  # auto on CUDA: exact search on the device, whatever the bank's size
        model.config["memory_index"] = exact
        assert model.memory_backend() == "torch"
