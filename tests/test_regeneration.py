"""Dataset regeneration (DR4SR) and the regenerate -> backbone -> RAFT pipeline, on tiny data."""

import itertools
import json
import os
from collections import Counter

import numpy as np
import pytest
import torch
from recbole.data import data_preparation
from recbole.data.interaction import Interaction
from recbole.utils import init_seed

from conftest import SMALL, write_tiny_dataset
from recbole_rag import Config, get_model, get_trainer, pipeline, run_recbole_rag
from recbole_rag.checkpoint import save_checkpoint
from recbole_rag.data import load_dataset
from recbole_rag.errors import CheckpointError, ConfigError, DatasetError
from recbole_rag.inference import load_data_and_model
from recbole_rag.memory.builders import build_pattern_memory, pattern_prefixes
from recbole_rag.model.sequential_recommender.regenerator import PATTERN_ITEMS
from recbole_rag.regeneration import inference, writer
from recbole_rag.regeneration.patterns import (
    Patterns,
    mine_patterns,
    sample_occurrences,
    sequence_stats,
    training_sequences,
)
from recbole_rag.trainer import load_checkpoint
from recbole_rag.trainer.raserec_trainer import memory_layout
from recbole_rag.trainer.regenerator_trainer import RegeneratorTrainer, within_sources

REGEN = {"pattern_min_support": 2, "pattern_bank_min_support": 2, "retrieval_k": 3, "epochs": 1}


def _splits(config):
    return data_preparation(config, load_dataset(config))


def _rows(dataset):
    """A split's rows as (user, history, target) tokens: comparable across id remappings."""
    users, histories, targets, _ = writer.split_rows(dataset, dataset.config)
    return sorted(zip(users, histories, targets))


def _regenerate_once(root, **overrides):
    settings = {
        **SMALL,
        **REGEN,
        "data_path": str(write_tiny_dataset(root / "data")),
        "checkpoint_dir": str(root / "saved"),
        "regen_data_path": str(root / "out"),
        **overrides,
    }
    cwd = os.getcwd()
    os.chdir(root)
    try:
        run_recbole_rag("Regenerator", "tiny", config_dict=settings)
    finally:
        os.chdir(cwd)
    return settings, root / "out" / "tiny-regen"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    """The tiny dataset regenerated once for the module, as the reference does (and its
    control): (settings, folder)."""
    return _regenerate_once(tmp_path_factory.mktemp("regen"), regen_control=True)


@pytest.fixture(scope="module")
def regenerated_ours(tmp_path_factory):
    """Our variant: each user's regenerated patterns as rows under that user."""
    return _regenerate_once(tmp_path_factory.mktemp("ours"), regen_inference="ours", regen_data="regenerated")


# --- mining -------------------------------------------------------------------------------------
def test_mining_counts_each_sequence_once_and_never_crosses_sequences():
    items, offsets = np.array([1, 2, 1, 2, 9, 1, 2, 2, 7]), np.array([0, 4, 7, 9])  # [1 2 1 2] [9 1 2] [2 7]
    patterns = mine_patterns(items, offsets, min_support=2, max_len=3)
    assert [tuple(p[:n]) for p, n in zip(patterns.items, patterns.lengths)] == [(1, 2)]
    assert patterns.support.tolist() == [2]  # twice in the first sequence counts once
    assert patterns.occurrences.tolist() == [[0, 0], [1, 0]]
    patterns = mine_patterns(items, offsets, min_support=1, max_len=3)
    found = {tuple(p[:n]): s for p, n, s in zip(patterns.items, patterns.lengths, patterns.support)}
    assert found[(1, 2, 1)] == 1 and found[(9, 1, 2)] == 1 and found[(2, 7)] == 1
    assert not {(2, 9), (2, 2), (1, 2, 9), (1, 2, 2), (2, 2, 7)} & set(found)  # across a boundary


def test_gapped_mining_finds_what_a_brute_force_count_finds():
    rng = np.random.default_rng(3)
    lengths = rng.integers(2, 12, 40)
    items, offsets = rng.integers(1, 6, lengths.sum()), np.r_[0, np.cumsum(lengths)]
    holders = {}  # pattern -> sequences with a placement spanning at most 4 steps (window 5)
    for seq_index, (start, stop) in enumerate(zip(offsets[:-1], offsets[1:])):
        seq = items[start:stop].tolist()
        for size in range(2, 5):
            for positions in itertools.combinations(range(len(seq)), size):
                if positions[-1] - positions[0] < 5:
                    holders.setdefault(tuple(seq[p] for p in positions), set()).add(seq_index)
    expected = {p: len(h) for p, h in holders.items() if len(h) >= 3}
    patterns = mine_patterns(items, offsets, min_support=3, max_len=4, window=5)
    found = {tuple(p[:n].tolist()): s for p, n, s in zip(patterns.items, patterns.lengths, patterns.support)}
    assert found == expected and any(len(p) == 4 for p in found)
    pairs = {(int(q), tuple(patterns.items[p, : patterns.lengths[p]].tolist())) for q, p in patterns.occurrences}
    assert pairs == {(q, p) for p, h in holders.items() if p in expected for q in h}
    consecutive = mine_patterns(items, offsets, min_support=3, max_len=4)
    assert len(consecutive) < len(patterns)
    with pytest.raises(DatasetError, match="pattern_max_len 5 cannot exceed pattern_window 4"):
        mine_patterns(items, offsets, max_len=5, window=4)


def test_regenerated_sequences_are_counted_by_length_and_novelty():
    items, offsets = np.array([1, 2, 3, 4, 5, 6, 7]), np.array([0, 4, 7])  # [1 2 3 4] [5 6 7]
    stats = sequence_stats([(2, 3), (1, 2, 3), (3, 5), (4, 5, 6), (6, 7)], items, offsets)
    assert stats == {"lengths": {2: 3, 3: 2}, "novel_share": 0.4}  # (3, 5) and (4, 5, 6) cross users


def test_pre_training_keeps_at_most_the_set_number_of_pairs_per_sequence():
    rng = np.random.default_rng(0)
    occurrences = np.unique(np.stack([rng.integers(0, 30, 600), rng.integers(0, 50, 600)], 1), axis=0)
    kept = sample_occurrences(occurrences, 4, seed=1)
    per_sequence = np.bincount(occurrences[:, 0], minlength=30)
    assert np.array_equal(np.bincount(kept[:, 0], minlength=30), np.minimum(per_sequence, 4))
    assert {tuple(r) for r in kept} <= {tuple(r) for r in occurrences}
    assert np.array_equal(kept, sample_occurrences(occurrences, 4, seed=1))
    assert not np.array_equal(kept, sample_occurrences(occurrences, 4, seed=2))
    assert np.array_equal(sample_occurrences(occurrences, None), occurrences)


def test_mining_uses_each_users_training_part_only(tmp_path):
    # Every user ends with the same two items, so (.., "iV", "iT") would be the most frequent
    # pattern of all if the validation / test items leaked into mining.
    folder = tmp_path / "data" / "ends"
    folder.mkdir(parents=True)
    lines, raw = ["user_id:token\titem_id:token\ttimestamp:float"], {}
    rng = np.random.default_rng(0)
    for user in range(20):
        seq = [f"i{x}" for x in rng.integers(1, 6, 5)] + ["iV", "iT"]
        raw[f"u{user}"] = seq
        lines += [f"u{user}\t{item}\t{t}" for t, item in enumerate(seq)]
    (folder / "ends.inter").write_text("\n".join(lines) + "\n")
    config = Config("Regenerator", "ends", config_dict={**SMALL, "data_path": str(tmp_path / "data")})
    train = _splits(config)[0].dataset
    users, items, offsets = training_sequences(train, config)
    tokens = train.field2id_token
    for user, start, stop in zip(users, offsets[:-1], offsets[1:]):
        assert list(tokens["item_id"][items[start:stop]]) == raw[tokens["user_id"][user]][:-2]
    leaked = train.token2id("item_id", ["iV", "iT"])
    for window in (None, 5):
        patterns = mine_patterns(items, offsets, min_support=1, max_len=5 if window else 3, window=window)
        assert len(patterns) and not np.isin(patterns.items, leaked).any()


def test_a_dataset_too_small_to_mine_stops_with_a_clear_message(tiny):
    with pytest.raises(DatasetError, match="lower pattern_min_support"):
        run_recbole_rag("Regenerator", "tiny", config_dict={**tiny, "pattern_min_support": 1000})
    with pytest.raises(DatasetError, match="pattern_min_len"):
        mine_patterns(np.array([1, 2]), np.array([0, 2]), min_len=3, max_len=2)


def test_bad_regenerator_settings_are_refused(tiny):
    with pytest.raises(ConfigError, match="regen_balance"):
        run_recbole_rag("Regenerator", "tiny", config_dict={**tiny, "regen_balance": 1.5})
    with pytest.raises(ConfigError, match="regen_per_user"):
        run_recbole_rag("Regenerator", "tiny", config_dict={**tiny, "regen_per_user": 0})
    for key, value, message in [
        ("regen_inference", "beam", "regen_inference must be one of reference, ours"),
        ("regen_data", "all", "regen_data must be one of reference, regenerated"),
        ("regen_conditions", 0, "regen_conditions must be an integer >= 1"),
        ("regen_entropy_weight", -1.0, "regen_entropy_weight must be >= 0"),
        ("regen_view_balance", -0.5, "regen_view_balance must be >= 0"),
        ("regen_lr_schedule", "step", "regen_lr_schedule must be one of epoch, batch"),
        ("regen_original_copies", 0, "regen_original_copies must be an integer >= 1"),
    ]:
        with pytest.raises(ConfigError, match=message):
            run_recbole_rag("Regenerator", "tiny", config_dict={**tiny, key: value})
    for value in (-1, 25):
        with pytest.raises(ConfigError, match=r"regen_min_len must be an integer from 0 to regen_max_len - 1 \(24\)"):
            run_recbole_rag("Regenerator", "tiny", config_dict={**tiny, "regen_min_len": value})
    with pytest.raises(ConfigError, match="regen_max_len must be an integer >= 3"):
        run_recbole_rag("Regenerator", "tiny", config_dict={**tiny, "regen_max_len": 2})
    with pytest.raises(ConfigError, match="does not take pretrained_path"):
        run_recbole_rag("Regenerator", "tiny", config_dict={**tiny, **REGEN, "pretrained_path": "x.pth"})
    with pytest.raises(CheckpointError, match="No checkpoint file at 'x.pth'"):
        run_recbole_rag("Regenerator", "tiny", config_dict={**tiny, **REGEN, "resume_path": "x.pth"})
    with pytest.raises(CheckpointError, match="No checkpoint file at 'missing.pth'"):
        run_recbole_rag("Regenerator", "tiny", config_dict={**tiny, **REGEN, "regen_item_embedding": "missing.pth"})


# --- regenerator and hybrid inference -------------------------------------------------------
def _trained_regenerator(tiny):
    config = Config("Regenerator", "tiny", config_dict={**tiny, **REGEN})
    train, _, _ = _splits(config)
    model = get_model("Regenerator")(config, train.dataset)
    _, items, offsets = training_sequences(train.dataset, config)
    patterns = mine_patterns(items, offsets, 2)
    model.set_patterns(patterns.items)
    return model, patterns


def test_hybrid_inference_mixes_generated_and_selected_patterns(tiny):
    model, patterns = _trained_regenerator(tiny)
    sequences = torch.randint(1, model.n_items, (7, 10))
    assert inference.split_modes(4, 0.25) == (1, 3)
    selected = inference.regenerate(model, sequences, n_per_user=3, balance=0.0)
    mined = {tuple(p) for p in patterns.items}
    assert selected.shape == (7, 3, 3) and all(tuple(p) in mined for p in selected.reshape(-1, 3))
    generated = inference.regenerate(model, sequences, n_per_user=3, balance=1.0)
    lengths = (generated > 0).sum(-1)
    assert ((lengths >= 2) & (generated[..., 0] > 0)).all()  # at least one transition each
    assert (generated < model.n_items).all()  # items only: no BOS / EOS written out
    assert all(len({tuple(p) for p in user}) == 3 for user in generated)  # distinct per user


def test_reference_inference_decodes_one_sequence_per_view_from_the_source_then_any_item(tiny):
    model, _ = _trained_regenerator({**tiny, "regen_conditions": 3, "regen_max_len": 8})
    sources = torch.randint(1, model.n_items, (6, 10))
    sources[:, 7:] = 0
    memory, padding = model.eval().encode(sources)
    views = [inference.decode_view(model, memory, padding, sources, k) for k in range(3)]
    assert not torch.equal(model.memory(memory, 0), model.memory(memory, 1))  # the views differ
    for decoded in views:
        assert decoded.shape[1] <= 7 and ((decoded >= 0) & (decoded < model.n_items)).all()  # no BOS / EOS
        for source, row in zip(sources.tolist(), decoded.tolist()):
            items = [t for t in row if t]
            assert row[: len(items)] == items  # nothing after the end
            assert len(set(items)) == len(items)  # never an item twice
            assert set(items[:2]) <= set(source)  # the first two from the source
    out = inference.regenerate_sequences(model, sources)
    assert len(out) == len(set(out)) <= 6 * 3 and all(len(s) >= 2 for s in out)


def test_the_source_is_read_between_bos_and_eos_as_the_reference_or_alone(tiny):
    model, _ = _trained_regenerator(tiny)  # regen_source_tokens: True, the default
    sources = torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0]])
    wrapped = model.wrap_source(sources)
    assert wrapped.tolist() == [[model.bos, 5, 6, 7, model.eos, 0], [model.bos, 8, model.eos, 0, 0, 0]]
    memory, padding = model.eval().encode(sources)
    assert memory.shape[1] == 5 and padding.tolist() == [[False] * 5, [False] * 3 + [True] * 2]
    longest = torch.randint(1, model.n_items, (2, model.max_seq_length))  # a full-length source fits the positions
    assert model.encode(longest)[0].shape[1] == model.max_seq_length + 2
    items_only, _ = _trained_regenerator({**tiny, "regen_source_tokens": False})
    memory, padding = items_only.eval().encode(sources)
    assert memory.shape[1] == 3 and padding.tolist() == [[False] * 3, [False, True, True]]
    with pytest.raises(ConfigError, match="'regen_source_tokens' expects true or false \\(default True\\), got 'yes'"):
        _trained_regenerator({**tiny, "regen_source_tokens": "yes"})


def test_sets_saved_before_the_reference_recipe_keys_are_found_under_their_recipe(regenerated):
    settings, _ = regenerated
    before = writer.expected_manifest(
        Config(
            "Regenerator", "tiny", config_dict={**settings, "regen_source_tokens": False, "regen_original_copies": 1}
        )
    )
    assert not {"regen_source_tokens", "regen_original_copies"} & set(before["settings"])
    now = writer.expected_manifest(Config("Regenerator", "tiny", config_dict=settings))
    assert now["settings"]["regen_source_tokens"] is True and now["settings"]["regen_original_copies"] == 2
    once = {**settings, "regen_original_copies": 1}
    assert writer.pretraining_key(Config("Regenerator", "tiny", config_dict=once)) == writer.pretraining_key(
        Config("Regenerator", "tiny", config_dict=settings)
    )  # the copies are written, not learned: the same regenerator decodes both


def test_the_diversity_promoter_picks_views_by_gumbel_softmax_and_trains_them(tiny):
    model, patterns = _trained_regenerator({**tiny, "regen_conditions": 3})
    prefix = torch.tensor([[model.bos, 1, 2, 0], [model.bos, 3, 4, 5]])
    model.train()
    tau = model.tau
    weights = model.condition_weights(prefix)
    assert weights.shape == (2, 3) and torch.allclose(weights.sum(1), torch.ones(2)) and model.tau < tau
    sources = torch.tensor([[1, 2, 3, 0], [3, 4, 5, 6]])
    batch = Interaction({model.ITEM_SEQ: sources, PATTERN_ITEMS: torch.tensor([[1, 2, 0], [4, 5, 0]])})
    model.calculate_loss(batch).backward()
    for part in (model.condition_views, model.condition_encoder, model.condition_head):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    assert model.pattern_head.weight.grad is None  # the selection head trains only for our inference


def test_min_len_bars_eos_until_that_many_items(tiny):
    model, _ = _trained_regenerator({**tiny, "regen_conditions": 2, "regen_max_len": 8})
    with torch.no_grad():
        model.embedding.weight[model.eos] = 0.0
        model.embedding.weight[model.eos, 0] = 1e4  # EOS wins every step it is allowed
        model.transformer.decoder.norm.bias[0] = 1.0
        model.transformer.decoder.norm.weight[0] = 0.0
    sources = torch.randint(1, model.n_items, (5, 10))
    memory, padding = model.eval().encode(sources)
    for min_len in (0, 3):
        model.min_len = min_len
        decoded = inference.decode_view(model, memory, padding, sources, 1)
        assert ((decoded > 0).sum(1) == min_len).all()


def test_view_balance_subtracts_the_entropy_of_the_batchs_mean_pick(tiny):
    model, _ = _trained_regenerator({**tiny, "regen_conditions": 3})
    model.train()
    sources = torch.tensor([[1, 2, 3, 0], [3, 4, 5, 6], [2, 4, 6, 0]])
    batch = Interaction({model.ITEM_SEQ: sources, PATTERN_ITEMS: torch.tensor([[1, 2, 0], [4, 5, 6], [2, 6, 0]])})
    picks, pick = [], model.condition_weights
    model.condition_weights = lambda prefix: picks.append(pick(prefix)) or picks[-1]
    losses = []
    for balance in (0.0, 2.0):
        model.view_balance, model.tau = balance, 1.0
        torch.manual_seed(0)
        losses.append(model.calculate_loss(batch))
    assert torch.equal(picks[0], picks[1])
    mean = picks[1].mean(0)
    assert float(-(mean * mean.log()).sum()) > 0.1
    assert torch.allclose(losses[1], losses[0] + 2.0 * (mean * mean.log()).sum(), atol=1e-5)


def test_source_masked_training_needs_every_target_in_the_source(tiny):
    model, _ = _trained_regenerator(tiny)
    sources = torch.tensor([[1, 2, 3, 0]])
    inside = Interaction({model.ITEM_SEQ: sources, PATTERN_ITEMS: torch.tensor([[2, 3, 0]])})
    outside = Interaction({model.ITEM_SEQ: sources, PATTERN_ITEMS: torch.tensor([[2, 9, 0]])})
    assert torch.isfinite(model.calculate_loss(inside)) and not torch.isfinite(model.calculate_loss(outside))
    mined = Patterns(np.array([[2, 3, 0], [2, 9, 0]]), np.array([2, 2]), np.array([2, 2]), np.array([[0, 0], [0, 1]]))
    assert within_sources(sources.numpy(), mined).tolist() == [True, False]  # the trainer drops the second


def test_item_embeddings_start_from_a_backbones_checkpoint(tiny, tmp_path, monkeypatch):
    sasrec = run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "epochs": 1})
    state = torch.load(sasrec["saved_model_file"], weights_only=True)["state_dict"]
    config = Config("Regenerator", "tiny", config_dict={**tiny, **REGEN})
    train = _splits(config)[0]
    model = get_model("Regenerator")(config, train.dataset)
    model.load_item_embedding(state, "ckpt")
    assert torch.equal(model.embedding.weight[: model.n_items], state["item_embedding.weight"])
    with pytest.raises(CheckpointError, match=r"has item embeddings of shape .*hidden_size must match"):
        model.load_item_embedding({"item_embedding.weight": torch.zeros(model.n_items, 3)}, "ckpt")
    with pytest.raises(CheckpointError, match="has no item_embedding.weight"):
        model.load_item_embedding({}, "ckpt")
    copy = tmp_path / "copy.pth"  # the same item table in another file: a saved set is still reused
    copy.write_bytes(open(sasrec["saved_model_file"], "rb").read())
    assert writer.item_table_fingerprint(str(copy)) == writer.item_table_fingerprint(sasrec["saved_model_file"])
    state["item_embedding.weight"] = state["item_embedding.weight"] + 1
    torch.save({"state_dict": state}, tmp_path / "other.pth")
    assert writer.item_table_fingerprint(str(tmp_path / "other.pth")) != writer.item_table_fingerprint(str(copy))
    loaded = []
    monkeypatch.setattr(type(model), "load_item_embedding", lambda self, state, path: loaded.append(path))
    settings = {**tiny, **REGEN, "regen_item_embedding": sasrec["saved_model_file"], "epochs": 0}
    run_recbole_rag("Regenerator", "tiny", config_dict=settings)
    assert loaded == [sasrec["saved_model_file"]]


def test_a_stopped_pre_training_resumes_to_the_weights_of_an_unbroken_one(tiny, tmp_path, monkeypatch):
    settings = {**tiny, **REGEN, "epochs": 3, "regen_data_path": str(tmp_path / "out")}
    config = Config("Regenerator", "tiny", config_dict={**settings, "checkpoint_dir": str(tmp_path / "a")})
    train = _splits(config)[0]
    monkeypatch.setattr(writer, "write_regenerated", lambda *args: str(tmp_path / "out"))  # weights only
    init_seed(config["seed"], True)
    whole = RegeneratorTrainer(config, get_model("Regenerator")(config, train.dataset))
    whole.fit(train, None)
    config = Config("Regenerator", "tiny", config_dict={**settings, "checkpoint_dir": str(tmp_path / "b")})
    init_seed(config["seed"], True)
    stopped = RegeneratorTrainer(config, get_model("Regenerator")(config, train.dataset))
    train_epoch = stopped._train_epoch

    def stop_at_epoch_2(batches, epoch, **kwargs):
        if epoch == 2:
            raise KeyboardInterrupt
        return train_epoch(batches, epoch, **kwargs)

    stopped._train_epoch = stop_at_epoch_2
    with pytest.raises(KeyboardInterrupt):
        stopped.fit(train, None)
    [last] = (tmp_path / "b").glob("*-last.pth")
    config = Config("Regenerator", "tiny", config_dict={**settings, "resume_path": str(last)})
    resumed = RegeneratorTrainer(config, get_model("Regenerator")(config, train.dataset))
    resumed.fit(train, None)
    assert resumed.start_epoch == 2 and resumed.model.tau == whole.model.tau < 1.0
    for name, weight in whole.model.state_dict().items():
        assert torch.equal(weight, resumed.model.state_dict()[name]), name


def test_a_finished_pre_training_resumed_decodes_again_without_training(tiny, tmp_path, monkeypatch):
    settings = {**tiny, **REGEN, "epochs": 2, "checkpoint_dir": str(tmp_path / "saved")}
    run_recbole_rag("Regenerator", "tiny", config_dict={**settings, "regen_data_path": str(tmp_path / "a")})
    [last] = (tmp_path / "saved").glob("*-last.pth")
    [model_file] = (path for path in (tmp_path / "saved").glob("*.pth") if path != last)
    saved = model_file.read_bytes()

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(RegeneratorTrainer, "_train_epoch", no_training)
    again = {"regen_data_path": str(tmp_path / "b"), "regen_min_len": 3, "resume_path": str(last)}
    run_recbole_rag("Regenerator", "tiny", config_dict={**settings, **again})
    with open(tmp_path / "b" / "tiny-regen" / writer.MANIFEST) as f:
        manifest = json.load(f)
    lengths = manifest["counts"]["regenerated_stats"]["lengths"]
    assert manifest["settings"]["regen_min_len"] == 3 and lengths and min(map(int, lengths)) >= 3
    assert model_file.read_bytes() == saved  # the trained model's file is left as it was


def test_a_regenerator_saved_before_the_recipe_keys_loads_as_it_was_trained(tiny, tmp_path):
    settings = {**tiny, **REGEN, "checkpoint_dir": str(tmp_path / "saved"), "regen_data_path": str(tmp_path / "a")}
    run_recbole_rag("Regenerator", "tiny", config_dict={**settings, "regen_source_tokens": False})
    [model_file] = (path for path in (tmp_path / "saved").glob("*.pth") if not path.name.endswith("-last.pth"))
    checkpoint = load_checkpoint(str(model_file))
    for key in writer.ADDED_REGEN_KEYS:  # as a checkpoint written before the keys existed
        del checkpoint["config"][key]
    save_checkpoint(checkpoint, str(tmp_path / "before.pth"))
    config, model, *_ = load_data_and_model(str(tmp_path / "before.pth"))
    assert config["regen_source_tokens"] is False and config["regen_original_copies"] == 1
    assert not model.source_tokens_on
    # resumed under today's default (BOS/EOS), it says which setting it needs
    with pytest.raises(
        ConfigError, match=r"was trained with regen_source_tokens False: resume it with --regen_source_tokens=False\.$"
    ):
        again = {"resume_path": str(tmp_path / "before.pth"), "regen_data_path": str(tmp_path / "b")}
        run_recbole_rag("Regenerator", "tiny", config_dict={**settings, **again})


def test_a_finished_pre_training_killed_before_its_model_file_was_written_writes_it_on_resume(tiny, tmp_path):
    settings = {**tiny, **REGEN, "epochs": 2, "checkpoint_dir": str(tmp_path / "saved")}
    run_recbole_rag("Regenerator", "tiny", config_dict={**settings, "regen_data_path": str(tmp_path / "a")})
    [last] = (tmp_path / "saved").glob("*-last.pth")
    [model_file] = (path for path in (tmp_path / "saved").glob("*.pth") if path != last)
    model_file.write_bytes(b"")  # the name was claimed, the process stopped before the weights went in
    again = {"regen_data_path": str(tmp_path / "b"), "resume_path": str(last)}
    run_recbole_rag("Regenerator", "tiny", config_dict={**settings, **again})
    assert load_checkpoint(model_file)["state_dict"].keys() == load_checkpoint(last)["state_dict"].keys()


@pytest.mark.parametrize("schedule", ["epoch", "batch"])
def test_the_learning_rate_follows_the_cosine_per_epoch_or_as_the_reference_per_batch(tiny, tmp_path, schedule):
    settings = {**tiny, **REGEN, "epochs": 3, "train_batch_size": 8, "regen_lr_schedule": schedule}
    config = Config("Regenerator", "tiny", config_dict={**settings, "regen_data_path": str(tmp_path)})
    train = _splits(config)[0]
    trainer = RegeneratorTrainer(config, get_model("Regenerator")(config, train.dataset))
    rates = []
    trainer.optimizer.register_step_pre_hook(lambda optimizer, *_: rates.append(optimizer.param_groups[0]["lr"]))
    trainer.fit(train, None, saved=False)
    steps = len(rates) // 3
    assert steps > 3 and len(rates) == 3 * steps
    if schedule == "epoch":
        assert rates == [pytest.approx(0.001 * (1 + np.cos(np.pi * e / 3)) / 2) for e in range(3) for _ in range(steps)]
    else:  # the reference's torch scheduler, stepped after every batch
        reference = torch.optim.lr_scheduler.CosineAnnealingLR(torch.optim.Adam([torch.zeros(1)], lr=0.001), T_max=3)
        expected = []
        for _ in rates:
            expected.append(reference.get_last_lr()[0])
            reference.optimizer.step()
            reference.step()
        assert rates == pytest.approx(expected) and min(rates) < 1e-5 and rates.count(rates[0]) < len(rates)


def test_registry_gives_the_regenerator_trainer():
    assert get_trainer(None, "Regenerator") is RegeneratorTrainer


# --- the regenerated dataset ----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["reference", "ours", "control"])
def test_regenerated_set_keeps_each_users_valid_and_test_rows(regenerated, regenerated_ours, kind):
    settings, folder = regenerated_ours if kind == "ours" else regenerated
    folder = folder.parent / "tiny-regen-control" if kind == "control" else folder
    original = _splits(Config("SASRec", "tiny", config_dict=settings))
    name, files, overrides = pipeline.regenerated_run(folder, None, settings)
    regen = _splits(Config("SASRec", name, files, overrides))
    assert _rows(regen[1].dataset) == _rows(original[1].dataset)
    assert _rows(regen[2].dataset) == _rows(original[2].dataset)
    original_train, regen_train = _rows(original[0].dataset), _rows(regen[0].dataset)
    manifest = json.loads((folder / "manifest.json").read_text())
    added = manifest["counts"]["train_rows_added"]
    assert len(regen_train) == len(original_train) + added > len(original_train)
    assert set(original_train) <= set(regen_train)
    new_users = {u for u, _, _ in regen_train} - {u for u, _, _ in original_train}
    extra = [row for row in regen_train if row[0] in new_users]
    if kind == "ours":  # rows under each user's own id
        assert not new_users
    elif kind == "control":  # the same number of rows again, all copies of original ones
        assert not new_users and set(regen_train) == set(original_train)  # (user, history, target)
        reference = json.loads((folder.parent / "tiny-regen" / "manifest.json").read_text())
        assert added == reference["counts"]["train_rows_added"] and manifest["control"] is True
    else:  # the original rows twice, every mined pattern and regenerated sequence as a sequence of its own
        counts = manifest["counts"]
        assert counts["original_rows_repeated"] == len(original_train)  # regen_original_copies: 2, the reference's
        copies = Counter(regen_train)
        assert all(copies[row] >= 2 for row in original_train)
        assert {u.split("-")[0] for u in new_users} == {"pattern", "regen"}
        assert len(extra) + len(original_train) == added
        assert len({u for u in new_users if u.startswith("pattern")}) == counts["pattern_sequences"] > 0
        assert len({u for u in new_users if u.startswith("regen")}) == counts["regenerated_sequences"] > 0
        stats = counts["regenerated_stats"]
        assert sum(stats["lengths"].values()) == counts["regenerated_sequences"] and 0 <= stats["novel_share"] <= 1
        assert len(stats["view_picks"]) == 5 and sum(stats["view_picks"]) == counts["patterns"]  # K = 5 views
    assert manifest["source"]["dataset"] == "tiny" and manifest["settings"]["regen_balance"] == 0.5


def test_pairs_bank_never_gives_a_user_its_own_regenerated_rows(regenerated_ours):
    settings, folder = regenerated_ours
    name, files, overrides = pipeline.regenerated_run(folder, None, settings)
    config = Config("RaSeRec", name, files, overrides)
    feat = _splits(config)[0].dataset.inter_feat
    users = feat["user_id"].numpy()
    _, memory_id, memory_stop = memory_layout(users, feat["timestamp"].numpy(), feat["item_length"].numpy())
    counts = json.loads((folder / "manifest.json").read_text())["counts"]
    n_original = counts["train_rows_original"]
    first = n_original + counts.get("original_rows_repeated", 0)  # the original rows, their copy, then the new
    for row in range(n_original):
        own_regenerated = np.flatnonzero(users[first:] == users[row]) + first
        assert ((memory_id[own_regenerated] >= memory_id[row]) & (memory_id[own_regenerated] < memory_stop[row])).all()
        if first > n_original:  # the row's copy shares its entry: neither retrieves the other's target
            assert memory_id[row + n_original] == memory_id[row]


def test_a_matching_manifest_is_reused_and_a_different_one_refused(regenerated, monkeypatch):
    settings, folder = regenerated

    def no_training(*args, **kwargs):
        raise AssertionError("regenerated again although the saved set matches")

    monkeypatch.setattr(pipeline, "run_recbole_rag", no_training)
    assert pipeline.regenerate("tiny", None, settings) == str(folder)
    with pytest.raises(DatasetError, match="regen_balance: saved 0.5, now 0.25.*--regen_overwrite=True"):
        pipeline.regenerate("tiny", None, {**settings, "regen_balance": 0.25})
    with pytest.raises(DatasetError, match="does not match"):  # a direct run never overwrites it either
        run_recbole_rag("Regenerator", "tiny", config_dict={**settings, "regen_balance": 0.25})
    assert (
        writer.find_regenerated(
            Config("Regenerator", "tiny", config_dict={**settings, "regen_balance": 0.25, "regen_overwrite": True})
        )
        is None
    )


def test_an_interrupted_regeneration_leaves_nothing_to_pick_up(tiny, tmp_path, monkeypatch):
    config = Config("Regenerator", "tiny", config_dict={**tiny, **REGEN, "regen_data_path": str(tmp_path / "out")})

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "_write_patterns", crash)  # dies after the .inter files
    train = _splits(config)[0]
    with pytest.raises(KeyboardInterrupt):
        RegeneratorTrainer(config, get_model("Regenerator")(config, train.dataset)).fit(train, None, saved=False)
    assert not (tmp_path / "out" / "tiny-regen").exists()
    assert list((tmp_path / "out").iterdir()) == []  # the temporary folder is gone too
    assert writer.find_regenerated(config) is None
    (tmp_path / "out" / "tiny-regen").mkdir()  # e.g. a copy that stopped half-way
    with pytest.raises(DatasetError, match="no manifest.json"):
        writer.find_regenerated(config)


# --- RAFT on the regenerated data -----------------------------------------------------------
def test_pattern_prefixes_give_every_transition_of_a_pattern():
    sequences, lengths, targets = pattern_prefixes(np.array([[4, 5, 6], [7, 8, 0]]), max_len=4)
    assert sequences.tolist() == [[4, 0, 0, 0], [4, 5, 0, 0], [7, 0, 0, 0]]
    assert lengths.tolist() == [1, 2, 1] and targets.tolist() == [5, 6, 8]


def test_pattern_bank_holds_prefixes_of_patterns_with_enough_support(regenerated):
    settings, folder = regenerated
    name, files, overrides = pipeline.regenerated_run(folder, None, settings)
    config = Config("RaSeRec", name, files, {**overrides, "memory_source": "patterns", "pattern_bank_min_support": 3})
    train = _splits(config)[0].dataset
    model = get_model("RaSeRec")(config, train)
    items, support = writer.read_patterns(folder / f"{name}.patterns", train)
    bank, entry_stop = build_pattern_memory(model, train, config)
    kept = items[support >= 3]
    assert len(bank) == int(((kept > 0).sum(1) - 1).sum()) and list(entry_stop) == list(range(1, len(bank) + 1))
    assert sorted(bank.values) == sorted(pattern_prefixes(kept, 10)[2])
    with pytest.raises(DatasetError, match="pattern_bank_min_support"):
        config["pattern_bank_min_support"] = 10**6
        build_pattern_memory(model, train, config)


def test_unknown_memory_source_is_refused_before_training(tiny):
    config = Config("RaSeRec", "tiny", config_dict={**tiny, "memory_source": "nope"})
    model = get_model("RaSeRec")(config, _splits(config)[0].dataset)
    with pytest.raises(ConfigError, match="memory_source must be one of pairs, patterns"):
        get_trainer(None, "RaSeRec")(config, model)


def test_the_pipeline_runs_all_stages_in_one_call(regenerated, tmp_path):
    settings, _ = regenerated
    results, table = pipeline.run_pipeline(
        "SASRec",
        "tiny",
        ["pairs", "patterns"],
        baseline=False,
        regen_epochs=1,
        config_dict=settings,
        out_dir=str(tmp_path / "res"),
    )
    # the regenerated set of the fixture is reused (same settings), RecBole's SASRec trains on it
    assert [r["model"] for r in results] == [
        "SASRec on tiny-regen",
        "RaSeRec@SASRec on tiny-regen (pairs)",
        "RaSeRec@SASRec on tiny-regen (patterns)",
    ]
    assert all(0.0 <= r["test_result"]["ndcg@10"] <= 1.0 for r in results)
    assert (tmp_path / "res" / "tiny-regen-SASRec-compare.csv").is_file() and "(patterns)" in table


def test_the_pipeline_rafts_on_any_recbole_backbone(regenerated, tmp_path):
    settings, _ = regenerated
    results, _ = pipeline.run_pipeline(
        "GRU4Rec",
        "tiny",
        ["pairs"],
        baseline=False,
        regen_epochs=1,
        config_dict=settings,
        out_dir=str(tmp_path / "res"),
    )
    assert [r["model"] for r in results] == ["GRU4Rec on tiny-regen", "RaSeRec@GRU4Rec on tiny-regen (pairs)"]
    assert load_checkpoint(results[1]["saved_model_file"])["config"]["backbone"] == "GRU4Rec"


def test_dr4sr_plus_in_the_pipeline_personalises_the_backbone_only(regenerated, tmp_path):
    settings, _ = regenerated
    overrides = {**settings, "personalise_warmup_epochs": 0, "personalise_interval": 2, "personalise_unit": "rows"}
    results, _ = pipeline.run_pipeline(
        "SASRec",
        "tiny",
        ["pairs"],
        baseline=False,
        regen_epochs=1,
        config_file_list=["dr4sr-plus"],
        config_dict=overrides,
        out_dir=str(tmp_path),
    )  # the regenerator and RAFT stages would refuse personalise: they never get it
    backbone = torch.load(results[0]["saved_model_file"], weights_only=True)
    assert backbone["personaliser"]["meta_steps_done"] > 0 and results[1]["model"].startswith("RaSeRec@SASRec")


def test_the_pipeline_starts_the_regenerator_from_its_baselines_item_table(regenerated, tmp_path, monkeypatch):
    settings, folder = regenerated
    asked = []
    monkeypatch.setattr(pipeline, "regenerate", lambda dataset, files, overrides: asked.append(overrides) or folder)
    results, _ = pipeline.run_pipeline("SASRec", "tiny", [], config_dict=settings, out_dir=str(tmp_path))
    assert asked[0]["regen_item_embedding"] == results[0]["saved_model_file"] and results[0]["model"] == "SASRec"


def test_pipeline_cli_reports_bad_input(regenerated, capsys):
    settings, _ = regenerated
    assert pipeline.main(["--dataset=tiny", f"--data_path={settings['data_path']}", "--memory_sources=nope"]) == 2
    assert "memory_source must be one of" in capsys.readouterr().err
    common = ["--dataset=tiny", f"--data_path={settings['data_path']}", "--baseline=False"]
    assert pipeline.main([*common, "--backbone=NoRec"]) == 2
    assert "Unknown model 'NoRec'" in capsys.readouterr().err
    assert pipeline.main([*common, "--regen_epochs=0"]) == 2
    assert "regen_epochs must be an integer >= 1" in capsys.readouterr().err


def test_a_damaged_manifest_is_a_one_line_error(regenerated):
    settings, folder = regenerated
    manifest = folder / writer.MANIFEST
    saved = manifest.read_text()
    try:
        manifest.write_text(saved[: len(saved) // 2])
        with pytest.raises(DatasetError, match="cannot be read.*Remove"):
            pipeline.regenerate("tiny", None, settings)
    finally:
        manifest.write_text(saved)
