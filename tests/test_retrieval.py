import torch

from recbole_rag.model.layers import dropout
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


def _projected_attention(attention, query, keys, values, valid):
    """Multi-head attention as written in the paper: every key and value projected first."""
    batch, k, hidden = keys.shape
    heads = attention.n_heads
    q = attention.query(query).view(batch, heads, 1, -1)
    key = attention.key(keys).view(batch, k, heads, -1).transpose(1, 2)
    value = attention.value(values).view(batch, k, heads, -1).transpose(1, 2)
    scores = q @ key.transpose(-1, -2) / (q.shape[-1] ** 0.5 * attention.temperature)
    scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
    probs = dropout(scores.softmax(-1).nan_to_num(0.0), attention.dropout_prob, attention.training)
    context = (probs @ value).reshape(batch, hidden)
    return dropout(attention.out(context), attention.dropout_prob, attention.training)


def test_cross_attention_equals_projecting_every_key_and_value_in_training_too():
    torch.manual_seed(0)
    attention = CrossAttention(16, 4, dropout_prob=0.3, temperature=0.7)
    query, keys, values = torch.randn(6, 16), torch.randn(6, 5, 16), torch.randn(6, 5, 16)
    valid = torch.rand(6, 5) > 0.3
    valid[0] = False  # a row with nothing retrieved
    for training in (False, True):  # dropout leaves the weights' sum off 1: the value bias follows it
        attention.train(training)
        torch.manual_seed(1)
        want = _projected_attention(attention, query, keys, values, valid)
        torch.manual_seed(1)
        got = attention(query, keys, values, valid)
        assert torch.allclose(got, want, atol=1e-5), training
