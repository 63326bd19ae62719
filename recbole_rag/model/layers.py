"""Fast SASRec-style transformer layers for CPU and GPU.

Same architecture and regularisation as RecBole's SASRec (post-LN blocks, GELU feed-forward,
dropout on embeddings, attention probabilities and each sub-layer's output), computed with a
fused QKV projection, torch's scaled_dot_product_attention and a cheaper dropout mask.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from recbole_rag.errors import ConfigError


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
    ``groups``: Packings of consecutive sequences that attention pads separately, each to its
    own longest sequence (see ``by_length``); by default the whole batch.
    """

    def __init__(self, item_seq_len, length):
        lengths = item_seq_len.clamp(min=1)  # an empty sequence reads its padding, as RecBole's SASRec
        self.batch, self.length, self.lengths = len(lengths), length, lengths
        self.real = torch.arange(length, device=lengths.device) < lengths[:, None]  # (batch, length)
        self.index = self.real.flatten().nonzero().squeeze(1)  # packed row -> padded position
        self.last = torch.cumsum(lengths, 0) - 1  # packed row of each sequence's last item
        self.parts = None  # set by by_length; None: the whole batch is one group

    @property
    def groups(self):
        return self.parts or [self]

    @classmethod
    def by_length(cls, item_seq_len):
        """(order, packing) of the batch's sequences sorted by length (``order`` None when kept
        as they are), with attention groups of similar lengths.

        Attention pads every sequence to the batch's longest: one 50-item sequence among short
        ones (as on Amazon data) makes the whole batch's attention 50 x 50. Groups cut that while
        computing the same function; ``attention_groups`` picks them from the lengths.
        """
        lengths = item_seq_len.clamp(min=1)
        # One group on an accelerator (padding costs little there) and under CPU autocast: in
        # bfloat16, groups made DuoRec's steps slower (ml-100k 0.17 -> 0.22 s, 2 threads).
        if lengths.device.type != "cpu" or _cpu_autocast() or not len(lengths):
            return None, cls(lengths, int(lengths.max()) if len(lengths) else 1)
        ends = attention_groups(sorted(lengths.tolist()))
        if len(ends) == 1:
            return None, cls(lengths, ends[0][1])
        order = torch.argsort(lengths, stable=True)
        sorted_lengths = lengths[order]
        packing = cls(sorted_lengths, ends[-1][1])
        packing.parts, start = [], 0
        for end, length in ends:
            packing.parts.append(cls(sorted_lengths[start:end], length))
            start = end
        return order, packing

    def pad(self, packed):
        """(n_real, d) -> (batch, length, d), zeros at padding."""
        padded = packed.new_zeros(self.batch * self.length, packed.shape[-1])
        return padded.index_copy(0, self.index, packed).view(self.batch, self.length, -1)

    def pack(self, padded):
        """(batch, length, d) -> (n_real, d)."""
        return padded.reshape(self.batch * self.length, -1)[self.index]


def _cpu_autocast():
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


POSITIONS_FROM = ("start", "end")  # where SASRecEncoder counts positions from
GROUP_COST = 16384  # one more group's fixed cost, in units of one query-key pair (set by hand, not tuned)
POSITION_COST = 24  # one padded position's projections and copies, in the same units


def attention_groups(lengths):
    """Sorted sequence lengths -> [(end, longest)]: consecutive groups (ending before ``end``)
    that minimise the padded attention cost, sum over groups of n * L * (L + POSITION_COST) +
    GROUP_COST. Exact dynamic programme over the distinct lengths (at most the maximum length)."""
    distinct, ends = [], []  # each distinct length and the count of sequences up to it
    for i, length in enumerate(lengths):
        if distinct and distinct[-1] == length:
            ends[-1] = i + 1
        else:
            distinct.append(length)
            ends.append(i + 1)
    best = [0.0] + [float("inf")] * len(distinct)  # best[j]: cost of the first j distinct lengths
    cut = [0] * (len(distinct) + 1)
    for j in range(1, len(distinct) + 1):
        longest = distinct[j - 1]
        per_sequence = longest * (longest + POSITION_COST)
        for i in range(j):  # the last group holds distinct lengths i..j-1
            cost = best[i] + (ends[j - 1] - (ends[i - 1] if i else 0)) * per_sequence + GROUP_COST
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], len(distinct)
    while j:
        groups.append((ends[j - 1], distinct[j - 1]))
        j = cut[j]
    return groups[::-1]


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
        (batch, hidden) for each sequence's last item only. Projections run on every packed item
        at once; the padded product runs per group of ``packing`` (sequences never attend across
        groups, so the result is the same)."""
        hidden = x.shape[-1]
        weight, bias = self.qkv.weight, self.qkv.bias
        rows = [len(group.index) for group in packing.groups]
        if last_only:
            queries = F.linear(x[packing.last], weight[:hidden], bias[:hidden]).split([g.batch for g in packing.groups])
            keys_values = F.linear(x, weight[hidden:], bias[hidden:]).split(rows)
            parts = zip(packing.groups, queries, keys_values)
        else:
            parts = ((group, None, qkv) for group, qkv in zip(packing.groups, self.qkv(x).split(rows)))
        contexts = [self.group_attention(*part) for part in parts]
        return contexts[0] if len(contexts) == 1 else torch.cat(contexts)

    def group_attention(self, packing, q, projected):
        """Attention within one group, padded to its longest sequence: ``q`` (batch, hidden) of
        each last item with ``projected`` the packed keys and values, or ``q`` None with
        ``projected`` the packed queries, keys and values of every item."""
        last_only = q is not None
        hidden = projected.shape[-1] // (2 if last_only else 3)
        if last_only:
            q = q.view(packing.batch, self.n_heads, 1, -1)  # (batch, heads, 1, head_dim)
            kv = packing.pad(projected)
            k, v = kv.view(packing.batch, packing.length, 2, self.n_heads, -1).permute(2, 0, 3, 1, 4)
            mask = packing.real[:, None, None, :]
        else:
            qkv = packing.pad(projected).view(packing.batch, packing.length, 3, self.n_heads, -1)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # (batch, heads, length, head_dim) each
            mask = torch.ones(packing.length, packing.length, dtype=torch.bool, device=q.device).tril()
        if self.training and self.attn_dropout > 0 and q.device.type == "cpu":
            # SDPA's own dropout falls back to a slow path on CPU; do it with the cheap mask.
            # The mask as an additive bias inside the product (and the scale as its alpha): no
            # separate passes over the scores for them, forward or backward.
            batch, heads, n_queries, head_dim = q.shape
            bias = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, float("-inf"))
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
    longest sequence and only real items are computed (``Packing``). ``position_from``: "start"
    (RecBole's right-padded rows: item i at position i) or "end" (as a left-padded batch reads
    them, e.g. SRA-CL's authors': the last item always at position max_seq_length - 1).
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
        position_from="start",
    ):
        super().__init__()
        if position_from not in POSITIONS_FROM:
            raise ConfigError(f"position_from must be one of {', '.join(POSITIONS_FROM)}, got {position_from!r}.")
        self.from_end = position_from == "end"
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
        position_from = config["position_from"] or "start"  # a model whose YAML has no such key
        return cls(n_items, max_seq_length, **{k: config[k] for k in keys}, position_from=position_from)

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
        order, packing = Packing.by_length(item_seq_len)
        if order is not None:  # sorted by length for attention groups; put back at the end
            item_seq = item_seq[order]
        padded_rows = packing.index // packing.length, packing.index % packing.length
        positions = padded_rows[1]
        if self.from_end:  # shifted as if the row were left-padded to max_seq_length
            positions = positions + (self.position_embedding.num_embeddings - packing.lengths)[padded_rows[0]]
        x = self.item_embedding(item_seq[padded_rows]) + self.position_embedding(positions)
        x = dropout(self.embedding_norm(x), self.hidden_dropout, self.training)
        for layer in self.layers[:-1]:
            x = layer(x, packing)
        if not len(self.layers):
            out = x[packing.last]
        else:
            out = self.layers[-1](x, packing, last_only=True)
        return out if order is None else out[torch.argsort(order)]
