import torch

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
