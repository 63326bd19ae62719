"""Retrieval-augmented attention (RaSeRec's RAM): a user vector attends over the K memories
retrieved for it -- keys are the retrieved users' sequence vectors, values the embeddings of
the items that followed them.

Structure of the reference implementation's default (seq -> target) channel: cross-attention,
a position-wise feed-forward with residual and LayerNorm, and a second cross-attention whose
query is the feed-forward output; no residual around the cross-attentions.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from recbole_rag.model.layers import dropout


class CrossAttention(nn.Module):
    """Multi-head attention of one query vector per row over K (key, value) vectors."""

    def __init__(self, hidden_size, n_heads, dropout_prob, temperature=1.0):
        super().__init__()
        if hidden_size % n_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of n_heads {n_heads}")
        self.n_heads, self.dropout_prob, self.temperature = n_heads, dropout_prob, temperature
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)

    def forward(self, query, keys, values, valid=None):
        """query (B, H), keys and values (B, K, H), valid (B, K) bool or None -> (B, H).

        The same function as projecting all K keys and values, at 1/K of its cost: the query is
        taken into each head's key space instead (the key bias adds one constant per head and
        row, which the softmax cancels), and the value projection applied after the weighted sum
        of the raw values (its bias times the weights' sum, which dropout or an empty row leave
        off 1)."""
        batch, k, hidden = keys.shape
        heads = self.n_heads
        q = self.query(query).view(batch, heads, -1)  # (B, heads, d)
        q_in = torch.einsum("bhd,hdx->bhx", q, self.key.weight.view(heads, -1, hidden))  # W_k,h^T q_h
        scores = q_in @ keys.transpose(1, 2) / (math.sqrt(q.shape[-1]) * self.temperature)  # (B, heads, K)
        if valid is not None:
            scores = scores.masked_fill(~valid[:, None, :], float("-inf"))
        probs = scores.softmax(-1).nan_to_num(0.0)  # a row with nothing retrieved attends to nothing
        probs = dropout(probs, self.dropout_prob, self.training)
        mixed = probs @ values  # (B, heads, H)
        context = torch.einsum("bhx,hdx->bhd", mixed, self.value.weight.view(heads, -1, hidden))
        context = context + probs.sum(-1, keepdim=True) * self.value.bias.view(heads, -1)
        return dropout(self.out(context.reshape(batch, hidden)), self.dropout_prob, self.training)


class RetrievalAugmentedAttention(nn.Module):
    """h, retrieved keys and item vectors -> h' (the retrieval-based user representation)."""

    def __init__(self, hidden_size, n_heads, inner_size, dropout_prob, temperature=1.0, layer_norm_eps=1e-12):
        super().__init__()
        self.dropout_prob = dropout_prob
        self.first = CrossAttention(hidden_size, n_heads, dropout_prob, temperature)
        self.ffn_in = nn.Linear(hidden_size, inner_size)
        self.ffn_out = nn.Linear(inner_size, hidden_size)
        self.ffn_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.second = CrossAttention(hidden_size, n_heads, dropout_prob, temperature)

    def forward(self, h, keys, item_vectors, valid=None):
        x = self.first(h, keys, item_vectors, valid)
        x = self.ffn_norm(x + dropout(self.ffn_out(F.gelu(self.ffn_in(x))), self.dropout_prob, self.training))
        return self.second(x, keys, item_vectors, valid)
