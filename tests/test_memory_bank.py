import faiss
import numpy as np
import pytest

from recbole_rag.errors import CheckpointError, ConfigError
from recbole_rag.memory import MemoryBank
from recbole_rag.memory.bank import BLAS_THRESHOLD


def _bank(index_type="flat", n=200, dim=8, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    keys = rng.normal(size=(n, dim)).astype(np.float32)
    bank = MemoryBank(dim, index_type, **kwargs)
    bank.add(keys, np.arange(n) % 17 + 1)
    return bank, keys


def test_search_returns_nearest_by_inner_product_with_keys_and_values():
    bank, keys = _bank()
    queries = keys[:5] * 10  # each key's own direction, scaled: it is its own best match
    scores, found_keys, values, ids = bank.search(queries, 3)
    assert scores.shape == (5, 3) and found_keys.shape == (5, 3, 8) and values.shape == (5, 3)
    exact = queries @ keys.T
    np.testing.assert_array_equal(ids, np.argsort(-exact, axis=1)[:, :3])
    np.testing.assert_allclose(found_keys, keys[ids], rtol=1e-6)
    np.testing.assert_array_equal(values, ids % 17 + 1)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_exclude_never_returns_the_querys_own_entry():
    bank, keys = _bank()
    queries = keys[:50]
    _, _, _, ids = bank.search(queries, 5, exclude=np.arange(50))
    assert ids.shape == (50, 5)
    assert not np.any(ids == np.arange(50)[:, None])
    _, _, _, ids_all = bank.search(queries, 6)
    for row in range(50):  # same neighbours as an unrestricted search, minus the own entry
        expected = [i for i in ids_all[row] if i != row][:5]
        assert list(ids[row]) == expected


def test_add_at_any_time_changes_what_a_query_retrieves():
    bank, _ = _bank()
    query = np.full((1, 8), 3.0, dtype=np.float32)
    new_ids = bank.add(query, [99])
    assert len(bank) == 201 and list(new_ids) == [200]
    _, _, values, ids = bank.search(query, 1)
    assert ids[0, 0] == 200 and values[0, 0] == 99


@pytest.mark.parametrize("index_type, kwargs", [("hnsw", {}), ("ivf", {"nlist": 8, "nprobe": 8})])
def test_approximate_indexes_agree_with_exact_on_small_banks(index_type, kwargs):
    exact, keys = _bank(n=500)
    approx, _ = _bank(index_type, n=500, **kwargs)
    _, _, _, ids_exact = exact.search(keys[:20], 5)
    _, _, _, ids_approx = approx.search(keys[:20], 5)
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(ids_exact, ids_approx)])
    assert recall > 0.9


def test_cosine_metric_ignores_vector_length():
    bank = MemoryBank(2, metric="cosine")
    bank.add(np.array([[1.0, 0.0], [100.0, 100.0]]), [1, 2])
    _, _, values, _ = bank.search(np.array([[1.0, 0.1]]), 1)
    assert values[0, 0] == 1  # with plain inner product the long key would win


def test_save_and_load_round_trip(tmp_path):
    for index_type in ("flat", "hnsw"):
        bank, keys = _bank(index_type)
        path = tmp_path / f"{index_type}.npz"
        bank.save(path)
        loaded = MemoryBank.load(path)
        assert len(loaded) == len(bank) and loaded.index_type == index_type
        for a, b in zip(bank.search(keys[:4], 3), loaded.search(keys[:4], 3)):
            np.testing.assert_array_equal(a, b)
        loaded.add(keys[:1], [5])
        assert len(loaded) == len(bank) + 1


def test_a_bank_file_with_nan_keys_is_refused(tmp_path):
    bank, keys = _bank("flat")
    bank.save(tmp_path / "bank.npz")
    with np.load(tmp_path / "bank.npz", allow_pickle=False) as data:
        parts = dict(data)
    parts["keys"] = parts["keys"].copy()
    parts["keys"][-1, 0] = np.nan  # written by something else than MemoryBank.add, which refuses NaN
    np.savez(tmp_path / "nan.npz", **parts)
    with pytest.raises(CheckpointError, match="holds NaN or infinite keys"):
        MemoryBank.load(tmp_path / "nan.npz")


def test_bad_input_is_a_clear_error(tmp_path):
    bank, keys = _bank(n=10)
    with pytest.raises(ValueError, match=r"k must be in \[1, 10\]"):
        bank.search(keys[:1], 11)
    with pytest.raises(ValueError, match=r"k must be in \[1, 9\]"):
        bank.search(keys[:1], 10, exclude=[0])
    with pytest.raises(ValueError, match="empty"):
        MemoryBank(8).search(keys[:1], 1)
    with pytest.raises(ValueError, match=r"shape \(n, 8\)"):
        bank.search(np.zeros((1, 4)), 1)
    with pytest.raises(ValueError, match="3 keys but 2 values"):
        bank.add(keys[:3], [1, 2])
    with pytest.raises(ConfigError, match="index_type must be one of"):
        MemoryBank(8, "annoy")
    with pytest.raises(ValueError, match="needs >= nlist"):
        MemoryBank(8, "ivf", nlist=64).add(keys, np.ones(10))
    with pytest.raises(FileNotFoundError):
        MemoryBank.load(tmp_path / "none.npz")


def test_exclude_id_ranges_drop_a_users_own_and_later_prefixes():
    bank, keys = _bank()
    ranges = np.array([[10, 14], [0, 1]])
    _, _, _, ids = bank.search(keys[[10, 0]], 5, exclude=ranges)
    assert not np.any((ids[0] >= 10) & (ids[0] < 14)) and 0 not in ids[1]
    with pytest.raises(ValueError, match="excluding up to 4"):
        bank.search(keys[:2], 197, exclude=ranges)


def test_cosine_bank_returns_keys_as_given():
    bank = MemoryBank(2, metric="cosine")
    bank.add(np.array([[3.0, 4.0]]), [1])
    _, found, _, _ = bank.search(np.array([[1.0, 1.0]]), 1)
    np.testing.assert_allclose(found[0, 0], [3.0, 4.0])


def test_search_with_excluded_ranges_of_many_widths_equals_brute_force():
    rng = np.random.default_rng(3)
    bank = MemoryBank(8)
    keys = rng.normal(size=(300, 8)).astype(np.float32)
    bank.add(keys[:100], np.arange(100))
    bank.add(keys[100:], np.arange(100, 300))  # added in two chunks
    queries = rng.normal(size=(40, 8)).astype(np.float32)
    starts = rng.integers(0, 200, 40)
    ranges = np.stack([starts, starts + rng.choice([0, 1, 3, 17, 90], 40)], 1)
    _, _, values, ids = bank.search(queries, 5, ranges)
    scores = queries @ keys.T
    for q, (start, stop) in enumerate(ranges):
        scores[q, start:stop] = -np.inf
    np.testing.assert_array_equal(ids, np.argsort(-scores, axis=1)[:, :5])
    np.testing.assert_array_equal(values, ids)


@pytest.mark.parametrize("n_queries", [3, 64])  # 3 x 64-d: faiss's per-query loop; 64 x 64-d: BLAS
def test_batches_either_side_of_faiss_blas_switch_equal_brute_force(n_queries):
    assert faiss.cvar.distance_compute_blas_threshold <= BLAS_THRESHOLD  # set when the bank is imported
    rng = np.random.default_rng(4)
    keys, queries = rng.normal(size=(500, 64)).astype(np.float32), rng.normal(size=(n_queries, 64)).astype(np.float32)
    bank = MemoryBank(64)
    bank.add(keys, np.arange(500))
    scores, _, _, ids = bank.search(queries, 5)
    exact = queries @ keys.T
    np.testing.assert_array_equal(ids, np.argsort(-exact, axis=1)[:, :5])
    np.testing.assert_allclose(scores, np.take_along_axis(exact, ids, 1), rtol=1e-5)


def test_non_finite_vectors_and_non_integer_k_are_refused():
    bank, keys = _bank(n=10)
    bad = keys[:3].copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="keys hold NaN or inf in 1 of 3 rows"):
        bank.add(bad, [1, 2, 3])
    assert len(bank) == 10  # nothing was added
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match="queries hold NaN or inf"):
        bank.search(bad, 2)
    assert bank.search(keys[:1], np.int64(3))[3].shape == (1, 3)  # a numpy integer is an integer
    with pytest.raises(ValueError, match="k must be an integer, got 2.5"):
        bank.search(keys[:1], 2.5)


def test_ivf_lists_and_probes_follow_the_banks_size_unless_set():
    from recbole_rag.memory.bank import auto_nlist, auto_nprobe

    assert [auto_nlist(n) for n in (10**5, 10**6, 10**7)] == [1024, 4096, 16384]
    assert auto_nlist(2000) == 32 and auto_nlist(10) == 1  # >= 39 keys per list to train on
    assert [auto_nprobe(n) for n in (1, 1024, 16384)] == [1, 16, 64]
    bank, _ = _bank("ivf", n=2000)
    assert bank.params["nlist"] == bank.index.nlist == 32 and bank.params["nprobe"] == bank.index.nprobe == 16
    set_by_user, _ = _bank("ivf", n=2000, nlist=8, nprobe=2)
    assert (set_by_user.index.nlist, set_by_user.index.nprobe) == (8, 2)


@pytest.mark.parametrize("metric", ["ip", "cosine"])
@pytest.mark.parametrize("index_type", ["ivf", "hnsw"])
def test_approximate_banks_hold_each_key_once_and_give_it_back(index_type, metric, tmp_path):
    bank, keys = _bank(index_type, n=600, metric=metric)
    assert bank._keys[0].size == 0 and len(bank._keys) == 1  # nothing beside the index
    ids = np.array([[5, -1], [599, 0]])
    found, values = bank.entries(ids)
    np.testing.assert_allclose(found[0, 0], keys[5], rtol=1e-6)
    np.testing.assert_allclose(found[1], keys[[599, 0]], rtol=1e-6)
    assert not found[0, 1].any() and values.tolist() == [[5 % 17 + 1, 0], [599 % 17 + 1, 1]]
    bank.save(tmp_path / "bank.npz")
    with np.load(tmp_path / "bank.npz") as saved:
        assert "keys" not in saved  # once on disk too
    loaded = MemoryBank.load(tmp_path / "bank.npz")
    np.testing.assert_allclose(loaded.keys, keys, rtol=1e-6)
    for a, b in zip(bank.search(keys[:4], 3), loaded.search(keys[:4], 3)):
        np.testing.assert_array_equal(a, b)


def test_a_bank_file_of_the_first_format_loads(tmp_path):
    import json

    import faiss

    bank, keys = _bank("ivf", n=600, metric="cosine", nlist=8, nprobe=8)
    fresh = MemoryBank(8, "ivf", "cosine", nlist=8, nprobe=8)  # as version 1 wrote it: no direct map
    fresh.index.set_direct_map_type(faiss.DirectMap.NoMap)
    fresh.add(keys, np.arange(600) % 17 + 1)
    meta = {"version": 1, "dim": 8, "index_type": "ivf", "metric": "cosine", **fresh.params}
    index = faiss.serialize_index(fresh.index)
    np.savez(tmp_path / "v1.npz", index=index, keys=keys, values=fresh.values, meta=np.array(json.dumps(meta)))
    loaded = MemoryBank.load(tmp_path / "v1.npz")
    np.testing.assert_allclose(loaded.entries(np.arange(600))[0], keys, rtol=1e-6)
    np.testing.assert_array_equal(loaded.search(keys[:5], 3)[3], bank.search(keys[:5], 3)[3])


def test_a_large_ivf_finds_its_lists_through_an_hnsw_graph(monkeypatch):
    import faiss

    from recbole_rag.memory import bank as bank_module

    monkeypatch.setattr(bank_module, "HNSW_QUANTIZER_MIN_LISTS", 8)
    graph, keys = _bank("ivf", n=2000, nlist=16, nprobe=16)
    assert isinstance(faiss.downcast_index(graph.index.quantizer), faiss.IndexHNSW)
    exact, _ = _bank(n=2000)
    _, _, _, want = exact.search(keys[:20], 5)
    _, _, _, got = graph.search(keys[:20], 5)  # every list probed: the exact neighbours
    np.testing.assert_array_equal(got, want)


def test_an_auto_bank_is_ivf_from_its_first_adds_size_on_else_flat(monkeypatch, tmp_path):
    from recbole_rag.memory import bank as bank_module

    monkeypatch.setattr(bank_module, "AUTO_IVF_MIN_ENTRIES", 1000)
    small, keys = _bank("auto", n=999)
    assert small.index_type == "flat" and isinstance(small.index, faiss.IndexFlatIP)
    exact, _ = _bank("flat", n=999)
    for a, b in zip(small.search(keys[:10], 5), exact.search(keys[:10], 5)):
        np.testing.assert_array_equal(a, b)
    small.add(keys, np.ones(999, np.int64))  # a growing bank keeps the index its first add chose
    assert small.index_type == "flat" and len(small) == 1998
    large, keys = _bank("auto", n=1000)
    assert large.index_type == "ivf" and large.params["nlist"] == bank_module.auto_nlist(1000)
    large.save(tmp_path / "bank.npz")
    assert MemoryBank.load(tmp_path / "bank.npz").index_type == "ivf"  # saved as what it became
    assert MemoryBank(8, "auto").index_type == "auto" and len(MemoryBank(8, "auto").keys) == 0


def test_entries_of_one_id_copy_the_bank_and_an_empty_slot_leaves_it_alone():
    bank, keys = _bank("flat", n=20)
    key, value = bank.entries(np.array(3))
    assert key.shape == (8,) and value.shape == () and int(value) == 3 % 17 + 1
    key[:] = 0.0  # a caller's copy, not a view of the bank
    np.testing.assert_array_equal(bank.keys[3], keys[3])
    empty_key, empty_value = bank.entries(np.array(-1))
    assert not empty_key.any() and int(empty_value) == 0
    np.testing.assert_array_equal(bank.keys[0], keys[0])  # row 0 untouched
