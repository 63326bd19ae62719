import pytest
import torch
import torch.nn.functional as F
from recbole.data import data_preparation

from recbole_rag import Config, get_model, get_trainer
from recbole_rag.data import load_dataset
from recbole_rag.errors import ConfigError
from recbole_rag.model.layers import SASRecEncoder, dropout, keep_mask
from recbole_rag.model.sequential_recommender.duorec import SameTargetSampler, info_nce


def test_same_target_sampler_returns_other_sequences_with_the_same_next_item():
    seqs = torch.tensor([[1, 2, 0], [3, 2, 0], [4, 0, 0], [5, 6, 7], [6, 7, 0]])
    lens = torch.tensor([2, 2, 1, 3, 2])
    targets = torch.tensor([9, 9, 8, 9, 5])
    sampler = SameTargetSampler(seqs, lens, targets, n_items=10)
    torch.manual_seed(0)
    for _ in range(20):
        sem, sem_len = sampler.sample(seqs, targets)
        for row in range(5):
            source = (seqs == sem[row]).all(1).nonzero().item()
            assert targets[source] == targets[row]
            assert sem_len[row] == lens[source]
    # a target seen once falls back to the sequence itself (its second dropout view)
    assert torch.equal(sem[2], seqs[2]) and torch.equal(sem[4], seqs[4])


def test_same_target_sampler_mostly_avoids_the_query_itself():
    seqs = torch.arange(1, 9).view(4, 2)
    targets = torch.tensor([3, 3, 3, 3])
    sampler = SameTargetSampler(seqs, torch.full((4,), 2), targets, n_items=5)
    torch.manual_seed(0)
    hits = sum(int((sampler.sample(seqs, targets)[0] == seqs).all(1).sum()) for _ in range(200))
    assert hits < 0.15 * 800  # one draw alone would hit itself 25% of the time; two draws ~6%


def test_info_nce_prefers_matching_views():
    torch.manual_seed(0)
    z = F.normalize(torch.randn(8, 16), dim=-1) * 4
    aligned = info_nce(z, z + 0.01 * torch.randn_like(z), temperature=1.0)
    shuffled = info_nce(z, z[torch.randperm(8)], temperature=1.0)
    assert aligned < shuffled


def test_info_nce_equals_a_hand_computation():
    import math

    z_i = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z_j = torch.tensor([[0.5, 0.5], [1.0, -1.0]])
    views = [row.tolist() for row in torch.cat([z_i, z_j])]
    positive = [2, 3, 0, 1]  # each view's other view of the same row
    total = 0.0
    for a, va in enumerate(views):
        logits = {b: sum(x * y for x, y in zip(va, vb)) / 0.5 for b, vb in enumerate(views) if b != a}
        total += -logits[positive[a]] + math.log(sum(math.exp(v) for v in logits.values()))
    assert info_nce(z_i, z_j, temperature=0.5).item() == pytest.approx(total / 4, rel=1e-6)
    cos = [F.normalize(v, dim=-1) for v in (z_i, z_j)]
    assert info_nce(z_i, z_j, 0.5, "cos").item() == pytest.approx(info_nce(*cos, 0.5).item(), rel=1e-6)


@pytest.mark.parametrize("p", [0.3, 0.5, 0.25, 0.1])  # 0.5 and 0.25 take the 8-bit path
def test_keep_mask_rate_and_independence(p):
    torch.manual_seed(0)
    mask = keep_mask((400, 500), p, "cpu").flatten().float()
    assert abs(mask.mean().item() - (1 - p)) < 0.005
    # neighbours share a random word: both kept as often as two independent draws
    assert abs((mask[:-1] * mask[1:]).mean().item() - (1 - p) ** 2) < 0.005


@pytest.mark.parametrize("p, per_word", [(0.5, 8), (0.25, 8), (0.3, 4)])
def test_keep_mask_keeps_exactly_one_minus_p_of_the_uniform_values(monkeypatch, p, per_word):
    """Every value a slice can take, once each: the kept share is exactly 1-p (to the grid)."""
    bits = 64 // per_word
    values = torch.arange(2**bits, dtype=torch.int64)  # each slice value once, as little-endian words
    words = (values.view(-1, per_word) << (torch.arange(per_word) * bits)).sum(1)
    monkeypatch.setattr(torch, "randint", lambda *args, **kwargs: words)
    mask = keep_mask((2**bits,), p, "cpu")
    assert mask.sum().item() == 2**bits - round(p * 2**bits)


def test_inverted_dropout_expectation():
    torch.manual_seed(0)
    x = torch.ones(200, 500)
    assert abs(dropout(x, 0.3, True).mean().item() - 1.0) < 0.02
    assert torch.equal(dropout(x, 0.3, False), x)


def test_encoder_is_causal_and_ignores_padding():
    torch.manual_seed(0)
    encoder = SASRecEncoder(n_items=20, max_seq_length=6, hidden_size=8, n_layers=2, n_heads=2, inner_size=16).eval()
    seq = torch.tensor([[3, 4, 5, 0, 0, 0]])
    longer = torch.tensor([[3, 4, 5, 9, 9, 9]])
    out = encoder(seq, torch.tensor([3]))
    assert torch.allclose(out, encoder(longer, torch.tensor([3])), atol=1e-6)  # items after length unseen
    assert not torch.allclose(out, encoder(longer, torch.tensor([4])))


def _duorec(tiny, **overrides):
    config = Config("DuoRec", "tiny", config_dict={**tiny, **overrides})
    train, _, _ = data_preparation(config, load_dataset(config))
    return get_model("DuoRec")(config, train.dataset), next(iter(train))


def test_duorec_without_contrast_is_cross_entropy_and_with_it_adds_the_term(tiny):
    torch.manual_seed(0)
    plain, batch = _duorec(tiny, contrast="none")
    plain.eval()  # no dropout: the loss is deterministic
    logits = plain.full_sort_predict(batch)
    assert torch.allclose(plain.calculate_loss(batch), F.cross_entropy(logits, batch["item_id"]))
    duorec, _ = _duorec(tiny)
    duorec.load_state_dict(plain.state_dict())
    duorec.eval()
    assert duorec.calculate_loss(batch) > plain.calculate_loss(batch)


def test_duorec_full_sort_agrees_with_predict(tiny):
    model, batch = _duorec(tiny)
    model.eval()
    scores = model.full_sort_predict(batch)
    assert torch.allclose(model.predict(batch), scores.gather(1, batch["item_id"][:, None]).squeeze(1), atol=1e-5)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"contrast": "both"}, "contrast must be one of"),
        ({"tau": 0.0}, "tau must be > 0"),
        ({"lmd_sem": -1.0}, "lmd_sem must be >= 0"),
        ({"sim": "l2"}, "sim must be dot or cos"),
    ],
)
def test_duorec_bad_settings(tiny, overrides, message):
    with pytest.raises(ConfigError, match=message):
        _duorec(tiny, **overrides)


def test_enable_amp_trains_duorec_in_bfloat16_and_keeps_fp32_weights(tiny):
    config = Config("DuoRec", "tiny", config_dict={**tiny, "enable_amp": True})
    train, _, _ = data_preparation(config, load_dataset(config))
    model = get_model("DuoRec")(config, train.dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "DuoRec")(config, model)
    dtypes = set()
    model.encoder.layers[0].ffn_in.register_forward_hook(lambda module, args, out: dtypes.add(out.dtype))
    loss = trainer._train_epoch(train, 0)  # RecBole's training loop: autocast on the run's device
    assert dtypes == {torch.bfloat16} and torch.isfinite(torch.tensor(loss)).all()
    assert all(p.dtype == torch.float32 for p in model.parameters())
