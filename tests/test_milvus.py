"""The Milvus memory backend (recbole_rag/memory/milvus.py) on Milvus Lite: the faiss bank's
neighbours, exclusions and dynamic adds; RaSeRec end to end; bad input as one-line errors."""

import numpy as np
import pytest

from recbole_rag import load_data_and_model, run_recbole_rag
from recbole_rag.errors import ConfigError
from recbole_rag.inference import evaluate
from recbole_rag.memory import MemoryBank
from recbole_rag.memory.milvus import MilvusMemoryBank


def _pairs(n, dim, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)).astype(np.float32), rng.integers(1, 40, n)


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_milvus_returns_the_faiss_banks_neighbours_with_exclusions_and_adds(tmp_path, metric):
    uri = str(tmp_path / "bank.db")
    faiss_bank, milvus_bank = MemoryBank(8, metric=metric), MilvusMemoryBank(8, metric=metric, uri=uri)
    queries = _pairs(20, 8, 9)[0]
    exclude = np.stack([np.arange(0, 100, 5), np.arange(0, 100, 5) + np.arange(20) % 4], 1)
    for seed in (1, 2):  # a second add without rebuilding: the bank is dynamic
        keys, values = _pairs(60, 8, seed)
        np.testing.assert_array_equal(faiss_bank.add(keys, values), milvus_bank.add(keys, values))
        want, got = faiss_bank.search(queries, 7, exclude), milvus_bank.search(queries, 7, exclude)
        np.testing.assert_array_equal(got[3], want[3])  # the same ids, in the same order
        np.testing.assert_allclose(got[0], want[0], atol=1e-4)
        np.testing.assert_allclose(got[1], want[1], atol=1e-6)  # keys as added
        np.testing.assert_array_equal(got[2], want[2])
    assert len(milvus_bank) == 120
    ids = np.array([[3, -1], [119, 0]])
    for a, b in zip(milvus_bank.entries(ids), faiss_bank.entries(ids)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    reopened = MilvusMemoryBank(8, metric=metric, uri=uri)  # the collection persists
    assert len(reopened) == 120
    reopened.truncate(100)
    assert len(MilvusMemoryBank(8, metric=metric, uri=uri)) == 100


def test_an_interrupted_build_leaves_no_collection_by_the_final_name(tmp_path, monkeypatch):
    uri = str(tmp_path / "bank.db")
    keys, values = _pairs(30, 4, 0)
    MilvusMemoryBank.build(keys, values, "bank", dim=4, uri=uri)
    assert len(MilvusMemoryBank(4, uri=uri, collection="bank")) == 30

    def dies(self, keys, values):
        raise KeyboardInterrupt

    monkeypatch.setattr(MilvusMemoryBank, "add", dies)
    with pytest.raises(KeyboardInterrupt):
        MilvusMemoryBank.build(keys[:10], values[:10], "bank", dim=4, uri=uri)
    monkeypatch.undo()
    assert len(MilvusMemoryBank(4, uri=uri, collection="bank")) == 30  # the whole one stays


def test_an_auto_index_is_chosen_by_size_when_built_and_kept_when_reopened(tmp_path, monkeypatch):
    from recbole_rag.memory import bank as bank_module

    monkeypatch.setattr(bank_module, "AUTO_IVF_MIN_ENTRIES", 100)
    uri = str(tmp_path / "bank.db")
    small = MilvusMemoryBank.build(*_pairs(99, 4, 0), "small", dim=4, index_type="auto", uri=uri)
    large = MilvusMemoryBank.build(*_pairs(100, 4, 0), "large", dim=4, index_type="auto", uri=uri)
    assert (small.index_type, large.index_type) == ("flat", "ivf")
    assert MilvusMemoryBank(4, "auto", uri=uri, collection="large").index_type == "ivf"  # not refused
    assert MilvusMemoryBank(4, "auto", uri=uri, collection="new").index_type == "flat"


def test_bad_milvus_input_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"Milvus at 'http://127.0.0.1:1' does not answer .*memory_uri"):
        MilvusMemoryBank(4, uri="http://127.0.0.1:1")
    MilvusMemoryBank(4, uri=str(tmp_path / "bank.db"), collection="c")
    with pytest.raises(ConfigError, match="holds vectors of dim 4, this bank needs 8: set memory_collection"):
        MilvusMemoryBank(8, uri=str(tmp_path / "bank.db"), collection="c")
    with pytest.raises(ConfigError, match="has a FLAT index on IP, this bank needs IVF_FLAT on COSINE"):
        MilvusMemoryBank(4, "ivf", "cosine", uri=str(tmp_path / "bank.db"), collection="c")
    assert len(MilvusMemoryBank(4, uri=str(tmp_path / "bank.db"), collection="c")) == 0  # its own settings: reopened
    with pytest.raises(ConfigError, match="memory_index must be one of auto, flat, ivf, hnsw for the milvus backend"):
        MilvusMemoryBank(4, index_type="annoy", uri=str(tmp_path / "bank.db"))
    bank = MilvusMemoryBank(4, uri=str(tmp_path / "bank.db"), collection="c")
    with pytest.raises(ConfigError, match="at most 16,384 entries per query; this one needs 16,385"):
        bank._search(np.zeros((1, 4), np.float32), 16_385)  # past Milvus's topk cap: one line, not a server error


def test_raserec_on_milvus_ranks_as_on_faiss_and_reloads_its_bank(tiny, tmp_path):
    settings = {**tiny, "retrieval_k": 5, "epochs": 1, "raft_epochs": 1}
    on_faiss = run_recbole_rag("RaSeRec", "tiny", config_dict=settings)
    milvus = {**settings, "memory_backend": "milvus", "memory_uri": str(tmp_path / "memory.db")}
    on_milvus = run_recbole_rag("RaSeRec", "tiny", config_dict=milvus)
    for metric, value in on_faiss["test_result"].items():
        assert on_milvus["test_result"][metric] == pytest.approx(value, abs=1e-4), metric
    other = run_recbole_rag("RaSeRec", "tiny", config_dict={**milvus, "seed": 7})  # another run, the same uri
    _, model, _, train, valid, _ = load_data_and_model(on_milvus["saved_model_file"])
    assert type(model.memory).__name__ == "MilvusMemoryBank"  # the stored collection, cut to its training pairs
    assert model.memory.collection != load_data_and_model(other["saved_model_file"])[1].memory.collection
    assert len(model.memory) == len(train.dataset.inter_feat) + len(valid.dataset.inter_feat)  # + validation


def test_raserec_on_milvus_takes_an_auto_index(tiny, tmp_path):
    from recbole_rag import Config, get_model
    from recbole_rag.data import load_dataset

    milvus = {**tiny, "memory_backend": "milvus", "memory_uri": str(tmp_path / "m.db"), "memory_index": "auto"}
    config = Config("RaSeRec", "tiny", config_dict=milvus)
    model = get_model("RaSeRec")(config, load_dataset(config).build()[0])  # checked at construction: accepted
    assert model.memory_backend() == "milvus"


def test_a_new_run_never_replaces_another_runs_named_collection(tiny, tmp_path):
    milvus = {**tiny, "retrieval_k": 5, "epochs": 1, "raft_epochs": 1, "memory_backend": "milvus"}
    named = {**milvus, "memory_uri": str(tmp_path / "memory.db"), "memory_collection": "beauty_bank"}
    first = run_recbole_rag("RaSeRec", "tiny", config_dict=named)
    with pytest.raises(ConfigError, match="'beauty_bank' .* already holds a bank"):
        run_recbole_rag("RaSeRec", "tiny", config_dict={**named, "seed": 7})
    assert evaluate(first["saved_model_file"]) == first["test_result"]  # its bank is still there


def test_raserec_with_an_unreachable_milvus_stops_before_training(tiny):
    with pytest.raises(ConfigError, match="does not answer"):
        run_recbole_rag(
            "RaSeRec", "tiny", config_dict={**tiny, "memory_backend": "milvus", "memory_uri": "http://127.0.0.1:1"}
        )
    with pytest.raises(ConfigError, match="memory_backend must be one of auto, faiss, torch, milvus"):
        run_recbole_rag("RaSeRec", "tiny", config_dict={**tiny, "memory_backend": "redis"})
