import numpy as np
import pytest
import torch
from recbole.data import data_preparation

from recbole_rag import Config, get_model, get_trainer, run_recbole_rag
from recbole_rag.checkpoint import last_file_of
from recbole_rag.data import load_dataset
from recbole_rag.errors import CheckpointError, ConfigError
from recbole_rag.memory import MemoryBank
from recbole_rag.model.sequential_recommender.raserec import MEMORY_ID, MEMORY_STOP
from recbole_rag.trainer import load_checkpoint
from recbole_rag.trainer.raserec_trainer import RaSeRecTrainer, memory_layout


def _setup(tiny, **overrides):
    config = Config("RaSeRec", "tiny", config_dict={**tiny, "retrieval_k": 5, **overrides})
    train, valid, test = data_preparation(config, load_dataset(config))
    model = get_model("RaSeRec")(config, train.dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "RaSeRec")(config, model)
    return config, model, trainer, train, valid, test


def _with_memory(tiny, **overrides):
    config, model, trainer, train, valid, test = _setup(tiny, **overrides)
    trainer.build_memory(train.dataset, show_progress=False)
    model.start_raft()
    return model, trainer, train, valid, test


def test_registry_gives_the_two_stage_trainer():
    assert get_trainer(None, "RaSeRec") is RaSeRecTrainer


def test_memory_layout_puts_each_users_later_prefixes_after_its_own_entry():
    users = np.array([2, 1, 1, 5, 2, 1])  # rows in any order, as a shuffled training set
    times = np.array([7, 3, 1, 4, 8, 2])
    order, memory_id, memory_stop = memory_layout(users, times, lengths=np.ones(6))
    assert list(order) == [2, 5, 1, 0, 4, 3]  # user 1 by time, then user 2, then user 5
    assert list(memory_id) == [3, 2, 0, 5, 4, 1]
    assert list(memory_stop) == [5, 3, 3, 6, 5, 3]
    for row in range(6):  # excluded entries: this row and the same user's later rows only
        excluded = set(order[memory_id[row] : memory_stop[row]])
        assert excluded == {r for r in range(6) if users[r] == users[row] and times[r] >= times[row]}


def test_a_repeated_pair_shares_its_first_copys_entry_so_no_copy_retrieves_its_twin():
    users, times, lengths = np.array([1, 1, 1, 2]), np.array([1, 2, 1, 1]), np.array([1, 2, 1, 1])
    order, memory_id, memory_stop = memory_layout(users, times, lengths)  # rows 0 and 2: one pair twice
    assert memory_id[0] == memory_id[2] and memory_id[1] != memory_id[0]
    for row in (0, 2):  # each copy's excluded range holds both copies
        assert {0, 2} <= set(order[memory_id[row] : memory_stop[row]])
    assert memory_layout(users, np.array([1, 2, 3, 1]), lengths)[1].tolist() == [0, 1, 2, 3]  # distinct pairs


def _assert_outside_own_range(ids, batch):
    own = batch[MEMORY_ID].numpy()[:, None]
    assert not np.any((ids >= own) & (ids < batch[MEMORY_STOP].numpy()[:, None]))


def test_training_query_never_retrieves_its_own_pair(tiny, monkeypatch):
    # per-batch search (backbone trained in stage 2)
    model, trainer, train, _, _ = _with_memory(tiny, freeze_backbone=False)
    returned = []
    search = model.memory.search

    def recording_search(queries, k, exclude=None):
        result = search(queries, k, exclude)
        returned.append(result[3])
        return result

    monkeypatch.setattr(model.memory, "search", recording_search)
    model.train()
    for batch in train:
        model.calculate_loss(batch)
        _assert_outside_own_range(returned[-1], batch)
        # without the exclusion each row's own pair is a perfect (cosine 1) match
        scores, _, _, _ = search(model.memory.keys[batch[MEMORY_ID].numpy()], 1)
        np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-4)
    # neighbours cached once for a frozen backbone
    model, trainer, train, _, _ = _with_memory(tiny)
    model.cache_training_neighbours(trainer.entry_stop, chunk_size=7)
    for batch in train:
        _assert_outside_own_range(model.train_neighbours[batch[MEMORY_ID].numpy()], batch)
    plain_search = model.memory.search(model.memory.keys[:50], 5, np.stack([np.arange(50), trainer.entry_stop[:50]], 1))
    np.testing.assert_array_equal(model.train_neighbours[:50], plain_search[3])


def test_new_memory_changes_retrieval_and_ranking_without_training(tiny):
    model, _, _, valid, _ = _with_memory(tiny, alpha=0.0)
    model.eval()
    with torch.no_grad():  # last attention: uniform weights, values passed through (h' = mean item vector)
        attention = model.retrieval.second
        for layer in (attention.query, attention.key):
            layer.weight.zero_()
        for layer in (attention.value, attention.out):
            layer.weight.copy_(torch.eye(tiny["hidden_size"]))
            layer.bias.zero_()
    batch = next(iter(valid))[0]
    params = {k: v.clone() for k, v in model.state_dict().items()}
    query = model.forward(batch["item_id_list"][:1], batch["item_length"][:1])
    before = model.full_sort_predict(batch[:1])[0]
    target = int(torch.argmin(before[1:])) + 1  # the item this user is least likely to get
    new_ids = model.memory.add(np.repeat(query.numpy(), 5, 0), [target] * 5)
    scores, _, values, ids = model.memory.search(query.numpy(), 5)
    assert set(ids[0]) & set(new_ids) and target in values[0]  # new pairs retrieved at once
    np.testing.assert_allclose(scores[0], 1.0, atol=1e-4)
    after = model.full_sort_predict(batch[:1])[0]
    assert (before > before[target]).sum() > 0 and int(after.argmax()) == target  # now ranked first
    for k, v in model.state_dict().items():
        assert torch.equal(v, params[k]), k


def test_raft_trains_only_the_retrieval_module_and_extends_memory_before_test(tiny):
    config, model, trainer, train, valid, test = _setup(tiny)
    trainer.fit(train, valid, saved=True)
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    retrieval_before = {k: v.clone() for k, v in model.retrieval.state_dict().items()}
    model.train()
    trainer._train_epoch(train, 99)
    assert all(torch.equal(v, encoder_before[k]) for k, v in model.encoder.state_dict().items())
    assert any(not torch.equal(v, retrieval_before[k]) for k, v in model.retrieval.state_dict().items())
    n_train = len(train.dataset)
    assert len(model.memory) == n_train
    result = trainer.evaluate(test, load_best_model=True)
    assert len(model.memory) == n_train + len(valid.dataset)
    assert set(result) == {"recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20"}


def test_an_auto_index_is_exact_on_a_small_bank_and_ivf_on_a_large_one(tiny, monkeypatch):
    from recbole_rag.memory import bank as bank_module

    assert _with_memory(tiny)[0].memory.index_type == "flat"  # the default: exact search
    model = _with_memory(tiny, memory_index="auto")[0]
    assert model.memory.index_type == "flat"  # tiny's few pairs
    monkeypatch.setattr(bank_module, "AUTO_IVF_MIN_ENTRIES", len(model.memory))
    model = _with_memory(tiny, memory_index="auto")[0]
    assert model.memory.index_type == "ivf" and model.memory.params["nlist"] == bank_module.auto_nlist(
        len(model.memory)
    )


def test_run_end_to_end_and_reuse_stage_files(tiny, tmp_path, monkeypatch):
    result = run_recbole_rag("RaSeRec", "tiny", config_dict={**tiny, "retrieval_k": 5})
    assert result["epochs_run"] == 4  # 2 pre-training + 2 RAFT epochs
    checkpoint = torch.load(result["saved_model_file"], weights_only=True)
    assert any(k.startswith("retrieval.") for k in checkpoint["state_dict"])
    memory_files = list((tmp_path / "saved").glob("*memory*.npz"))
    assert len(memory_files) == 1
    again = run_recbole_rag(
        "RaSeRec",
        "tiny",
        config_dict={
            **tiny,
            "retrieval_k": 5,
            "epochs": 1,
            "pretrained_path": result["saved_model_file"],
            "memory_path": str(memory_files[0]),
        },
    )
    assert again["epochs_run"] == 1  # stage 1 skipped
    settings = {**tiny, "retrieval_k": 5, "epochs": 1, "pretrained_path": result["saved_model_file"]}
    with pytest.raises(CheckpointError, match="is a flat bank on cosine, this run asks for memory_index ivf"):
        run_recbole_rag(
            "RaSeRec", "tiny", config_dict={**settings, "memory_path": str(memory_files[0]), "memory_index": "ivf"}
        )
    from recbole_rag.memory import bank as bank_module

    monkeypatch.setattr(bank_module, "AUTO_IVF_MIN_ENTRIES", 1)  # auto: ivf at this size
    as_auto = {**settings, "memory_path": str(memory_files[0]), "memory_index": "auto"}  # auto, ivf at this size,
    assert run_recbole_rag("RaSeRec", "tiny", config_dict=as_auto)["epochs_run"] == 1  # takes an exact bank (CUDA's)
    with pytest.raises(
        CheckpointError, match=r"is a hnsw bank on cosine, this run asks for memory_index auto \(ivf at"
    ):
        hnsw = MemoryBank.load(memory_files[0])
        graph = MemoryBank(hnsw.dim, "hnsw", "cosine")
        graph.add(*hnsw.entries(np.arange(len(hnsw))))
        graph.save(tmp_path / "graph.npz")
        run_recbole_rag("RaSeRec", "tiny", config_dict={**as_auto, "memory_path": str(tmp_path / "graph.npz")})
    monkeypatch.undo()
    bank = MemoryBank.load(memory_files[0])
    keys, values = bank.entries(np.arange(len(bank)))
    assert len(bank) > 300
    keys[-5:] = keys[:5]  # the last entries' keys damaged, past the first 256
    damaged = MemoryBank(bank.dim, bank.index_type, bank.metric)
    damaged.add(keys, values)
    damaged.save(tmp_path / "damaged.npz")
    with pytest.raises(CheckpointError, match="built from another backbone or training set \\(or changed since\\)"):
        run_recbole_rag("RaSeRec", "tiny", config_dict={**settings, "memory_path": str(tmp_path / "damaged.npz")})
    other = run_recbole_rag("DuoRec", "tiny", config_dict={**tiny, "epochs": 1, "seed": 7})
    with pytest.raises(CheckpointError, match="built from another backbone"):
        run_recbole_rag(
            "RaSeRec",
            "tiny",
            config_dict={
                **tiny,
                "retrieval_k": 5,
                "pretrained_path": other["saved_model_file"],
                "memory_path": str(memory_files[0]),
            },
        )


@pytest.mark.parametrize("backbone", ["SASRec", "DuoRec"])
def test_raft_starts_from_a_recbole_sasrec_or_duorec_checkpoint(tiny, backbone):
    base = run_recbole_rag(backbone, "tiny", config_dict={**tiny, "epochs": 1})
    config, model, trainer, train, valid, _ = _setup(tiny, pretrained_path=base["saved_model_file"])
    trainer.pretrain(train, valid, verbose=False, saved=False, show_progress=False)
    reference = get_model(backbone)(Config(backbone, "tiny", config_dict=tiny), train.dataset)
    reference.load_state_dict(torch.load(base["saved_model_file"], weights_only=True)["state_dict"])
    reference.eval(), model.eval()
    batch = next(iter(train))
    expected = reference.forward(batch["item_id_list"], batch["item_length"])
    assert torch.allclose(model.forward(batch["item_id_list"], batch["item_length"]), expected, atol=1e-5)


def test_bad_settings_and_inputs(tiny, tmp_path):
    with pytest.raises(ConfigError, match=r"alpha must be a number in \[0.0, 1.0\]"):
        _setup(tiny, alpha=1.5)
    with pytest.raises(ConfigError, match="retrieval_k must be an integer >= 1"):
        _setup(tiny, retrieval_k=0)
    with pytest.raises(ConfigError, match="larger than the memory bank"):
        _with_memory(tiny, retrieval_k=100_000)
    _, model, trainer, train, valid, _ = _setup(tiny)
    with pytest.raises(ValueError, match="non-empty memory bank"):
        model.start_raft()
    with pytest.raises(ValueError, match="memory bank is empty"):
        model.augment(torch.zeros(2, tiny["hidden_size"]))
    args = dict(verbose=False, saved=False, show_progress=False)
    _, _, trainer, train, valid, _ = _setup(tiny, pretrained_path=str(tmp_path / "missing.pth"))
    with pytest.raises(CheckpointError, match="No checkpoint file"):
        trainer.pretrain(train, valid, **args)
    wide = run_recbole_rag("DuoRec", "tiny", config_dict={**tiny, "epochs": 1, "hidden_size": 32})
    _, _, trainer, train, valid, _ = _setup(tiny, pretrained_path=wide["saved_model_file"])
    with pytest.raises(CheckpointError, match="does not fit this model.*hidden_size 32"):
        trainer.pretrain(train, valid, **args)
    gru = run_recbole_rag("GRU4Rec", "tiny", config_dict={**tiny, "epochs": 1, "embedding_size": 16})
    _, _, trainer, train, valid, _ = _setup(tiny, pretrained_path=gru["saved_model_file"])
    with pytest.raises(CheckpointError, match="holds a GRU4Rec model"):
        trainer.pretrain(train, valid, **args)


def test_each_stage_resumes_from_its_checkpoint(tiny, tmp_path):
    first = run_recbole_rag("RaSeRec", "tiny", config_dict={**tiny, "retrieval_k": 5})
    stage1_file = next(p for p in (tmp_path / "saved").glob("*pretrain*.pth") if not p.stem.endswith("-last"))
    stage1 = torch.load(stage1_file, weights_only=True)
    stage2 = torch.load(first["saved_model_file"], weights_only=True)
    assert (stage1["other_parameter"]["stage"], stage2["other_parameter"]["stage"]) == ("pretrain", "raft")
    settings = {**tiny, "retrieval_k": 5, "epochs": 4}

    again = run_recbole_rag("RaSeRec", "tiny", config_dict={**settings, "resume_path": str(stage1_file)})
    resumed = torch.load(again["saved_model_file"], weights_only=True)  # a new stage-2 file
    assert again["saved_model_file"] != first["saved_model_file"] and resumed["other_parameter"]["stage"] == "raft"
    assert again["epochs_run"] == (4 - stage1["epoch"] - 1) + 4  # the rest of stage 1, then all of stage 2

    config, model, trainer, train, valid, _ = _setup(tiny, **{**settings, "resume_path": first["saved_model_file"]})
    trainer.fit(train, valid, saved=True)
    assert len(trainer.train_loss_dict) == 4 - stage2["epoch"] - 1  # stage 1 skipped, stage 2 continued
    assert trainer.saved_model_file == first["saved_model_file"]
    resumed_encoder = torch.load(first["saved_model_file"], weights_only=True)["state_dict"]
    assert all(torch.equal(v, resumed_encoder[f"encoder.{k}"]) for k, v in model.encoder.state_dict().items())


def test_resume_refuses_a_wrong_checkpoint(tiny):
    duorec = run_recbole_rag("DuoRec", "tiny", config_dict={**tiny, "epochs": 1})
    _, _, trainer, train, valid, _ = _setup(tiny, resume_path=duorec["saved_model_file"])
    with pytest.raises(CheckpointError, match="not a RaSeRec stage checkpoint"):
        trainer.fit(train, valid, saved=False)
    own = run_recbole_rag("RaSeRec", "tiny", config_dict={**tiny, "retrieval_k": 5, "epochs": 1})
    _, _, trainer, train, valid, _ = _setup(tiny, resume_path=own["saved_model_file"], hidden_size=32)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        trainer.fit(train, valid, saved=False)
    _, _, trainer, train, valid, _ = _setup(
        tiny, resume_path=own["saved_model_file"], pretrained_path=duorec["saved_model_file"]
    )
    with pytest.raises(ConfigError, match="not both"):
        trainer.fit(train, valid, saved=False)


def test_raft_trains_on_its_own_batch_size(tiny):
    config, model, trainer, train, valid, _ = _setup(tiny, raft_train_batch_size=16)
    trainer.build_memory(train.dataset, show_progress=False)
    loader = trainer.raft_loader(train)
    batch = next(iter(loader))
    assert len(batch) == 16 and MEMORY_ID in batch  # the same rows, with their bank entries
    assert len(next(iter(train))) == tiny["train_batch_size"] == config["train_batch_size"]
    *_, same, _, _, _ = _setup(tiny, raft_train_batch_size=tiny["train_batch_size"])
    assert same.raft_loader(train) is train
    for bad in (0, 2.5, "big", True):
        with pytest.raises(ConfigError, match="raft_train_batch_size"):
            _setup(tiny, raft_train_batch_size=bad)


def test_raft_stopped_after_epoch_k_resumes_as_if_never_stopped(tiny):
    backbone = run_recbole_rag("DuoRec", "tiny", config_dict={**tiny, "epochs": 1})
    settings = {**tiny, "retrieval_k": 5, "epochs": 3, "pretrained_path": backbone["saved_model_file"]}
    whole = run_recbole_rag("RaSeRec", "tiny", config_dict=settings)
    part = run_recbole_rag("RaSeRec", "tiny", config_dict={**settings, "epochs": 1})
    last = last_file_of(part["saved_model_file"])
    resumed = run_recbole_rag("RaSeRec", "tiny", config_dict={**settings, "pretrained_path": None, "resume_path": last})
    assert resumed["epochs_run"] == whole["epochs_run"] == 3
    assert resumed["best_valid_result"] == whole["best_valid_result"]
    assert resumed["test_result"] == whole["test_result"]
    whole_weights = load_checkpoint(last_file_of(whole["saved_model_file"]))["state_dict"]
    resumed_weights = load_checkpoint(last)["state_dict"]
    assert all(torch.equal(whole_weights[k], resumed_weights[k]) for k in whole_weights)


def test_frozen_backbone_training_reads_the_cached_neighbours_of_the_rows_own_entry(tiny, monkeypatch):
    model, trainer, train, _, _ = _with_memory(tiny)
    model.cache_training_neighbours(trainer.entry_stop)
    monkeypatch.setattr(model.memory, "search", lambda *args, **kwargs: pytest.fail("searched per batch"))
    used = []
    augment = model.augment
    monkeypatch.setattr(
        model,
        "augment",
        lambda h, exclude=None, neighbours=None: used.append((h, neighbours)) or augment(h, exclude, neighbours),
    )
    model.train()
    for batch in train:
        entries = batch[MEMORY_ID].numpy()
        model.calculate_loss(batch)
        h, neighbours = used[-1]
        np.testing.assert_array_equal(neighbours, model.train_neighbours[entries])
        # the bank entry a row reads is that row's own user vector, as the frozen backbone encodes it
        np.testing.assert_allclose(h.numpy(), model.encode(batch), atol=1e-5)


def test_alpha_1_scores_equal_the_backbones(tiny):
    model, _, _, _, test = _with_memory(tiny, alpha=1.0)
    model.eval()
    batch = next(iter(test))[0]
    backbone = model.forward(batch["item_id_list"], batch["item_length"]) @ model.item_embedding.weight.T
    assert torch.allclose(model.full_sort_predict(batch), backbone, atol=1e-6)
