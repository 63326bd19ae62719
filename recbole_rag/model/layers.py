"""Fast SASRec-style transformer layers for CPU and GPU.

Same architecture and regularisation as RecBole's SASRec (post-LN blocks, GELU feed-forward,
dropout on embeddings, attention probabilities and each sub-layer's output), computed with a
fused QKV projection, torch's scaled_dot_product_attention and a cheaper dropout mask.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def keep_mask(shape, p, device):
    """Boolean mask, each entry True with probability 1-p (exactly when p is a multiple of
    1/256, as the usual 0.5 is; else to 1/65536).

    torch's CPU dropout draws one bernoulli per element on one thread, which dominates a SASRec
    step; here one 64-bit random word gives eight 8-bit uniforms (four 16-bit ones where p needs
    the finer grid): 8x (4x) fewer RNG draws.
    """
    numel = math.prod(shape)
    per_word, dtype, low = (8, torch.uint8, 0) if float(p * 256).is_integer() else (4, torch.int16, -32768)
    words = torch.randint(-(2**63), 2**63 - 1, (-(-numel // per_word),), dtype=torch.int64, device=device)
    uniforms = words.view(dtype)[:numel].view(shape)  # uniform over the dtype's 2**(64 / per_word) values
    return uniforms >= low + round(p * 2 ** (64 // per_word))


def dropout(x, p, training):
    """Inverted dropout (as F.dropout) with keep_mask on CPU; F.dropout on accelerators."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    return x * (keep_mask(x.shape, p, x.device).to(x.dtype) * (1.0 / (1.0 - p)))


_ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "swish": F.silu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


class Packing:
    """Where a batch's real items sit: padded (batch, length) positions <-> packed rows.

    Sequences are RecBole's: items left-aligned, zero padding after ``item_seq_len``. Every
    position-wise op (projections, feed-forward, norms, dropout) runs on the packed real items
    only; on short-sequence data such as Amazon's most of a padded batch is padding.
    """

    def __init__(self, item_seq_len, length):
        lengths = item_seq_len.clamp(min=1)  # an empty sequence reads its padding, as RecBole's SASRec
        self.batch, self.length = len(lengths), length
        self.real = torch.arange(length, device=lengths.device) < lengths[:, None]  # (batch, length)
        self.index = self.real.flatten().nonzero().squeeze(1)  # packed row -> padded position
        self.last = torch.cumsum(lengths, 0) - 1  # packed row of each sequence's last item

    def pad(self, packed):
        """(n_real, d) -> (batch, length, d), zeros at padding."""
        padded = packed.new_zeros(self.batch * self.length, packed.shape[-1])
        return padded.index_copy(0, self.index, packed).view(self.batch, self.length, -1)

    def pack(self, padded):
        """(batch, length, d) -> (n_real, d)."""
        return padded.reshape(self.batch * self.length, -1)[self.index]


class TransformerLayer(nn.Module):
    """One post-LN block: causal multi-head self-attention, then a position-wise feed-forward."""

    def __init__(self, hidden_size, n_heads, inner_size, hidden_dropout, attn_dropout, act, eps):
        super().__init__()
        if hidden_size % n_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of n_heads {n_heads}")
        if act not in _ACTIVATIONS:
            raise ValueError(f"hidden_act '{act}' is not one of {', '.join(_ACTIVATIONS)}")
        self.n_heads = n_heads
        self.hidden_dropout = hidden_dropout
        self.attn_dropout = attn_dropout
        self.act = _ACTIVATIONS[act]
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.attn_out = nn.Linear(hidden_size, hidden_size)
        self.attn_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.ffn_in = nn.Linear(hidden_size, inner_size)
        self.ffn_out = nn.Linear(inner_size, hidden_size)
        self.ffn_norm = nn.LayerNorm(hidden_size, eps=eps)

    def attention(self, x, packing, last_only):
        """Causal self-attention of packed items x (n_real, hidden) -> (n_real, hidden), or
        (batch, hidden) for each sequence's last item only."""
        hidden = x.shape[-1]
        weight, bias = self.qkv.weight, self.qkv.bias
        if last_only:
            q = F.linear(x[packing.last], weight[:hidden], bias[:hidden])
            q = q.view(packing.batch, self.n_heads, 1, -1)  # (batch, heads, 1, head_dim)
            kv = packing.pad(F.linear(x, weight[hidden:], bias[hidden:]))
            k, v = kv.view(packing.batch, packing.length, 2, self.n_heads, -1).permute(2, 0, 3, 1, 4)
            mask = packing.real[:, None, None, :]
        else:
            qkv = packing.pad(self.qkv(x)).view(packing.batch, packing.length, 3, self.n_heads, -1)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # (batch, heads, length, head_dim) each
            mask = torch.ones(packing.length, packing.length, dtype=torch.bool, device=x.device).tril()
        if self.training and self.attn_dropout > 0 and x.device.type == "cpu":
            # SDPA's own dropout falls back to a slow path on CPU; do it with the cheap mask.
            # The mask as an additive bias inside the product (and the scale as its alpha): no
            # separate passes over the scores for them, forward or backward.
            batch, heads, n_queries, head_dim = q.shape
            bias = torch.zeros(mask.shape, dtype=q.dtype, device=x.device).masked_fill(~mask, float("-inf"))
            if bias.dim() == 4:  # last_only: one row of key padding per sequence
                bias = bias.expand(batch, heads, 1, -1).reshape(batch * heads, 1, -1)
            q, k, v = (t.reshape(batch * heads, -1, head_dim) for t in (q, k, v))
            scores = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=1 / math.sqrt(head_dim))
            probs = dropout(scores.softmax(-1), self.attn_dropout, True)
            context = torch.bmm(probs, v).view(batch, heads, n_queries, head_dim)
        else:
            p = self.attn_dropout if self.training else 0.0
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        context = context.transpose(1, 2).reshape(packing.batch, -1, hidden)
        return context[:, 0] if last_only else packing.pack(context)

    def forward(self, x, packing, last_only=False):
        """Packed items (n_real, hidden) -> the same; with ``last_only``, (batch, hidden) at each
        sequence's last item. The last block of an encoder needs nothing else, so it skips the
        query, attention output and feed-forward of every other item (the same result)."""
        residual = x[packing.last] if last_only else x
        context = self.attention(x, packing, last_only)
        x = self.attn_norm(residual + dropout(self.attn_out(context), self.hidden_dropout, self.training))
        h = self.ffn_out(self.act(self.ffn_in(x)))
        return self.ffn_norm(x + dropout(h, self.hidden_dropout, self.training))


class SASRecEncoder(nn.Module):
    """Item sequence -> user vector (the output at each sequence's last real position).

    With causal attention, padding never reaches a real position: the batch is cut to its
    longest sequence and only real items are computed (``Packing``).
    """

    def __init__(
        self,
        n_items,
        max_seq_length,
        hidden_size=64,
        n_layers=2,
        n_heads=2,
        inner_size=256,
        hidden_dropout_prob=0.5,
        attn_dropout_prob=0.5,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        initializer_range=0.02,
    ):
        super().__init__()
        self.hidden_dropout = hidden_dropout_prob
        self.initializer_range = initializer_range
        self.item_embedding = nn.Embedding(n_items, hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(max_seq_length, hidden_size)
        self.embedding_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.layers = nn.ModuleList(
            TransformerLayer(
                hidden_size, n_heads, inner_size, hidden_dropout_prob, attn_dropout_prob, hidden_act, layer_norm_eps
            )
            for _ in range(n_layers)
        )
        self.apply(self._init_weights)

    @classmethod
    def from_config(cls, config, n_items, max_seq_length):
        keys = [
            "hidden_size",
            "n_layers",
            "n_heads",
            "inner_size",
            "hidden_dropout_prob",
            "attn_dropout_prob",
            "hidden_act",
            "layer_norm_eps",
            "initializer_range",
        ]
        return cls(n_items, max_seq_length, **{k: config[k] for k in keys})

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.initializer_range)
        if isinstance(module, nn.LayerNorm):
            module.weight.data.fill_(1.0)
            module.bias.data.zero_()
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    def forward(self, item_seq, item_seq_len):
        """(batch, max_len) item ids, (batch,) lengths -> (batch, hidden) user vectors."""
        packing = Packing(item_seq_len, max(int(item_seq_len.max()), 1))
        padded_rows = packing.index // packing.length, packing.index % packing.length
        x = self.item_embedding(item_seq[padded_rows]) + self.position_embedding(padded_rows[1])
        x = dropout(self.embedding_norm(x), self.hidden_dropout, self.training)
        for layer in self.layers[:-1]:
            x = layer(x, packing)
        if not len(self.layers):
            return x[packing.last]
        return self.layers[-1](x, packing, last_only=True)
