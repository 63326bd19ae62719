import pytest
import torch

from recbole_rag.errors import ConfigError
from recbole_rag.model.layers import Packing, SASRecEncoder, TransformerLayer


def test_packing_round_trip_keeps_real_items_and_zeros_padding():
    lengths = torch.tensor([2, 4, 1])
    packing = Packing(lengths, 4)
    padded = torch.arange(12.0).view(3, 4, 1)
    packed = packing.pack(padded)
    assert packed.squeeze(1).tolist() == [0, 1, 4, 5, 6, 7, 8]
    assert packed[packing.last].squeeze(1).tolist() == [1, 7, 8]  # each sequence's last item
    assert torch.equal(packing.pad(packed), padded * packing.real[..., None])


def test_last_item_block_equals_the_full_block_at_the_last_items():
    torch.manual_seed(0)
    layer = TransformerLayer(16, 2, 32, 0.5, 0.5, "gelu", 1e-12).eval()
    packing = Packing(torch.tensor([7, 1, 4, 7, 3]), 7)
    x = torch.randn(len(packing.index), 16)
    full = layer(x, packing)
    assert full.shape == x.shape
    assert torch.allclose(layer(x, packing, last_only=True), full[packing.last], atol=1e-5)


def test_last_item_block_trains_with_dropout():
    layer = TransformerLayer(16, 2, 32, 0.5, 0.5, "gelu", 1e-12).train()
    packing = Packing(torch.tensor([5, 2, 3]), 5)
    x = torch.randn(len(packing.index), 16, requires_grad=True)
    out = layer(x, packing, last_only=True)
    # a random read-out: the plain sum of a LayerNorm's output is constant, its gradient zero
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(0))).sum().backward()
    assert out.shape == (3, 16) and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_encoder_matches_a_padded_computation_of_the_same_blocks():
    torch.manual_seed(0)
    encoder = SASRecEncoder(20, 8, hidden_size=16, n_layers=2, n_heads=2, inner_size=32).eval()
    seq = torch.tensor([[3, 4, 5, 0, 0], [1, 2, 3, 4, 5], [7, 0, 0, 0, 0]])
    lengths = torch.tensor([3, 5, 1])
    expected = []
    for row, length in zip(seq, lengths):  # each sequence alone, without padding
        one = Packing(length.view(1), int(length))
        x = encoder.embedding_norm(
            encoder.item_embedding(row[:length]) + encoder.position_embedding(torch.arange(int(length)))
        )
        for layer in encoder.layers:
            x = layer(x, one)
        expected.append(x[-1])
    assert torch.allclose(encoder(seq, lengths), torch.stack(expected), atol=1e-5)


def test_training_attention_path_equals_the_eval_path_without_its_dropout(monkeypatch):
    """On CPU, training with attention dropout takes its own path (mask as a bias inside the
    product); with the dropout itself switched off it must give SDPA's result, padding included."""
    import recbole_rag.model.layers as layers

    torch.manual_seed(0)
    layer = TransformerLayer(16, 2, 32, 0.0, 0.5, "gelu", 1e-12)
    packing = Packing(torch.tensor([7, 1, 4, 7, 3]), 7)
    x = torch.randn(len(packing.index), 16)
    expected = [layer.eval()(x, packing), layer(x, packing, last_only=True)]
    monkeypatch.setattr(layers, "dropout", lambda x, p, training: x)
    layer.train()
    assert torch.allclose(layer(x, packing), expected[0], atol=1e-5)
    assert torch.allclose(layer(x, packing, last_only=True), expected[1], atol=1e-5)


def test_attention_groups_split_a_long_outlier_from_short_sequences_and_cover_the_batch():
    from recbole_rag.model.layers import attention_groups

    assert attention_groups([50] * 300) == [(300, 50)]  # equal lengths: one group
    lengths = sorted([3] * 500 + [5] * 200 + [50])
    groups = attention_groups(lengths)
    assert groups[-1] == (len(lengths), 50) and len(groups) > 1  # the 50 no longer pads the rest
    ends = [end for end, _ in groups]
    assert ends == sorted(ends) and all(lengths[end - 1] == longest for end, longest in groups)


def test_grouped_attention_computes_what_one_padded_batch_does(monkeypatch):
    """Sorting a batch by length and padding each length group on its own changes nothing: the
    user vectors (back in the input order) and the gradients equal the one-group computation."""
    import recbole_rag.model.layers as layers

    torch.manual_seed(0)
    encoder = SASRecEncoder(
        30, 12, hidden_size=16, n_layers=2, n_heads=2, inner_size=32, hidden_dropout_prob=0.0, attn_dropout_prob=0.5
    )
    # attention dropout > 0 sends training through the CPU path; the dropout itself off
    monkeypatch.setattr(layers, "dropout", lambda x, p, training: x)
    lengths = torch.tensor([2, 12, 1, 3, 2, 11, 3, 1, 2, 12, 3, 2] * 8)
    seq = torch.randint(1, 30, (len(lengths), 12)) * (torch.arange(12) < lengths[:, None])
    order, packing = layers.Packing.by_length(lengths)
    assert order is not None and len(packing.groups) > 1  # this batch is grouped

    def vectors_and_grads():
        encoder.zero_grad()
        out = encoder(seq, lengths)
        (out * torch.arange(out.numel()).view(out.shape).sin()).sum().backward()
        return out.detach(), [p.grad.clone() for p in encoder.parameters() if p.grad is not None]

    for mode in (encoder.eval, encoder.train):  # SDPA path, then the CPU training path
        mode()
        grouped = vectors_and_grads()
        with monkeypatch.context() as m:
            m.setattr(layers, "attention_groups", lambda lengths: [(len(lengths), lengths[-1])])
            single = vectors_and_grads()
        assert torch.allclose(grouped[0], single[0], atol=1e-5)
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grouped[1], single[1]))


def test_autocast_keeps_one_group():
    lengths = torch.tensor([3] * 40 + [50])
    assert len(Packing.by_length(lengths)[1].groups) > 1
    with torch.autocast("cpu"):
        order, packing = Packing.by_length(lengths)
    assert order is None and packing.groups == [packing] and packing.parts is None and packing.length == 50


@pytest.mark.parametrize(
    "lengths, grouped",
    [
        ([2, 12, 1, 3, 2, 11, 3, 1, 2, 12, 3, 2] * 8, True),  # full-length rows among short ones
        ([2, 11, 1, 3, 2, 10, 3, 1, 2, 11, 3, 2] * 8, True),  # every row shorter than the table
        ([3, 4, 3, 5], False),  # one group, in the order given
    ],
)
def test_positions_from_the_end_compute_what_a_left_padded_batch_does(lengths, grouped):
    """position_from: end against the SRA-CL authors' computation: RecBole's TransformerEncoder
    (their encoder's layers) on left-padded rows, position ids 0..M-1, padding keys masked by
    -10000 under a causal mask, the last position read; the same weights."""
    from recbole.model.layers import TransformerEncoder

    import recbole_rag.model.layers as layers
    from recbole_rag.model.backbone import _from_recbole_sasrec

    torch.manual_seed(0)
    M, H = 12, 16
    theirs = TransformerEncoder(2, 2, H, 32, 0.5, 0.5, "gelu", 1e-12).eval()
    ours = SASRecEncoder(30, M, hidden_size=H, n_layers=2, n_heads=2, inner_size=32, position_from="end").eval()
    state = {f"trm_encoder.{k}": v for k, v in theirs.state_dict().items()}
    state.update({f"{k}_embedding.weight": getattr(ours, f"{k}_embedding").weight for k in ("item", "position")})
    state.update({"LayerNorm.weight": ours.embedding_norm.weight, "LayerNorm.bias": ours.embedding_norm.bias})
    ours.load_state_dict(_from_recbole_sasrec(state))
    lengths = torch.tensor(lengths)
    assert (layers.Packing.by_length(lengths)[0] is not None) == grouped
    right = torch.randint(1, 30, (len(lengths), M)) * (torch.arange(M) < lengths[:, None])
    left = torch.zeros_like(right)
    for row, n in enumerate(lengths.tolist()):
        left[row, M - n :] = right[row, :n]
    x = ours.embedding_norm(ours.item_embedding(left) + ours.position_embedding(torch.arange(M)))
    mask = (left > 0)[:, None, None, :] & torch.ones(M, M).tril().bool()
    expected = theirs(x, (1.0 - mask.float()) * -10000.0, output_all_encoded_layers=True)[-1][:, -1]
    out = ours(right, lengths)
    assert torch.allclose(out, expected, atol=1e-5)
    ours.from_end = False  # counted from the start, only full-length rows read the same
    start = ours(right, lengths)
    full = lengths == M
    assert torch.allclose(start[full], out[full], atol=1e-6) and not torch.allclose(start[~full], out[~full])


def test_positions_from_elsewhere_are_refused():
    with pytest.raises(ConfigError, match="position_from must be one of start, end"):
        SASRecEncoder(10, 5, position_from="left")
