import torch

from recbole_rag.model.layers import SASRecEncoder, TransformerLayer


def test_last_position_block_equals_the_full_block_at_those_positions():
    torch.manual_seed(0)
    layer = TransformerLayer(16, 2, 32, 0.5, 0.5, "gelu", 1e-12).eval()
    x = torch.randn(5, 7, 16)
    last = torch.tensor([6, 0, 3, 6, 2])  # shorter rows have padding after their last item
    full = layer(x)[torch.arange(5), last]
    assert torch.allclose(layer(x, last), full, atol=1e-5)
    changed = x.clone()
    changed[2, 4:] = 9.0  # positions after a row's last item never reach its output
    assert torch.allclose(layer(changed, last)[2], full[2], atol=1e-5)


def test_last_position_block_trains_with_dropout():
    layer = TransformerLayer(16, 2, 32, 0.5, 0.5, "gelu", 1e-12).train()
    x = torch.randn(4, 6, 16, requires_grad=True)
    out = layer(x, torch.tensor([5, 1, 2, 3]))
    out.sum().backward()
    assert out.shape == (4, 16) and torch.isfinite(x.grad).all()
    assert x.grad[1, 2:].abs().sum() == 0  # nothing after row 1's last item gets a gradient


def test_encoder_user_vector_is_its_last_blocks_output_at_the_last_item():
    torch.manual_seed(0)
    encoder = SASRecEncoder(20, 8, hidden_size=16, n_layers=2, n_heads=2, inner_size=32).eval()
    seq = torch.tensor([[3, 4, 5, 0, 0], [1, 2, 3, 4, 5]])
    lengths = torch.tensor([3, 5])
    x = encoder.embedding_norm(encoder.item_embedding(seq) + encoder.position_embedding(torch.arange(5)))
    for layer in encoder.layers:
        x = layer(x)
    assert torch.allclose(encoder(seq, lengths), x[torch.arange(2), lengths - 1], atol=1e-5)
