import torch

from recbole_rag.model.retrieval import CrossAttention, RetrievalAugmentedAttention


def test_cross_attention_ignores_masked_memories():
    torch.manual_seed(0)
    attention = CrossAttention(8, 2, dropout_prob=0.0).eval()
    query, keys, values = torch.randn(3, 8), torch.randn(3, 4, 8), torch.randn(3, 4, 8)
    valid = torch.tensor([[True, True, False, False]] * 3)
    changed = values.clone()
    changed[:, 2:] = 100.0  # masked slots may hold anything
    assert torch.allclose(attention(query, keys, values, valid), attention(query, keys, changed, valid))
    assert torch.allclose(attention(query, keys, values, valid), attention(query, keys[:, :2], values[:, :2]))


def test_row_with_nothing_retrieved_stays_finite():
    module = RetrievalAugmentedAttention(8, 2, 16, dropout_prob=0.0).eval()
    out = module(torch.randn(2, 8), torch.randn(2, 3, 8), torch.randn(2, 3, 8), torch.zeros(2, 3, dtype=torch.bool))
    assert torch.isfinite(out).all()
