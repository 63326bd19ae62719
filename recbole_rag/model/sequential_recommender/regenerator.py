"""Regenerator (DR4SR, arXiv 2405.17795): a transformer encoder-decoder that maps a user's
training sequence to the item-transition patterns mined from it.

As the reference code (github.com/USTC-StarTeam/DR4SR, ``2.Pretrain_regenerator.py``):

* one item embedding table shared by encoder, decoder and output (optionally initialised from a
  backbone's checkpoint, ``load_item_embedding``);
* the *diversity promoter*: ``regen_conditions`` = K views of the encoder memory (an MLP maps each
  memory vector to K vectors); during training a condition encoder reads the target pattern and
  picks a soft mixture of the K views (Gumbel-softmax, temperature from 1 down to 0.1), and an
  entropy term (weight ``regen_entropy_weight``) pushes each pick toward one view, so the K views
  specialise; at inference each view k decodes one output (``memory(k)``);
* ``regen_view_balance`` (ours, 0 = the reference): minus the entropy of the batch's mean pick,
  weighted, so the one-hot picks spread over the K views instead of all landing on one (on
  Beauty the reference's loss leaves every pattern on the same view: docs/dr4sr.md);
* with ``regen_source_mask``, every decoding step's logits are restricted to the source's items
  (and EOS) during training;
* with ``regen_source_tokens`` (the reference's), the encoder reads ``[BOS] + s + [EOS]``, as
  ``2.Pretrain_regenerator.py`` and ``3.Hybrid_inference.py`` build their sources.

A selection head scores every mined pattern against the encoded sequence, for our own inference
mode (``regen_inference: ours``, recbole_rag.regeneration.inference); it is trained only then.

Tokens: 0 padding, 1 .. n_items - 1 items (RecBole's ids), then BOS and EOS.
"""

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from torch import nn

from recbole_rag.errors import CheckpointError, ConfigError, is_count

PATTERN_ITEMS, PATTERN_INDEX = "pattern_items", "pattern_index"
INFERENCE_MODES = ("reference", "ours")
DATA_MODES = ("reference", "regenerated")  # what the regenerated dataset adds (regeneration/writer.py)
LR_SCHEDULES = ("epoch", "batch")  # the cosine stepped per epoch (ours) or per batch (the reference)
# The reference's Gumbel-softmax temperature: 1 at the start, x0.995 per training step, floor 0.1.
TAU_START, TAU_DECAY, TAU_FLOOR = 1.0, 0.995, 0.1


def entropy(weights):
    """Entropy of each distribution along the last axis."""
    return -(weights * torch.log(weights + 1e-12)).sum(-1)


class Regenerator(SequentialRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        if not 0.0 <= config["regen_balance"] <= 1.0:
            raise ConfigError(f"regen_balance must be in [0, 1], got {config['regen_balance']}.")
        for key, least in (
            ("regen_per_user", 1),
            ("regen_conditions", 1),
            ("regen_max_len", 3),
            ("regen_source_steps", 1),
            ("regen_original_copies", 1),
        ):
            if not is_count(config[key], least):
                raise ConfigError(f"{key} must be an integer >= {least}, got {config[key]!r}.")
        min_len = config["regen_min_len"]
        if not is_count(min_len) or min_len >= config["regen_max_len"]:
            raise ConfigError(
                f"regen_min_len must be an integer from 0 to regen_max_len - 1 ({config['regen_max_len'] - 1}), "
                f"got {min_len!r}."
            )
        if config["regen_inference"] not in INFERENCE_MODES:
            raise ConfigError(
                f"regen_inference must be one of {', '.join(INFERENCE_MODES)}, got {config['regen_inference']!r}."
            )
        if config["regen_data"] not in DATA_MODES:
            raise ConfigError(f"regen_data must be one of {', '.join(DATA_MODES)}, got {config['regen_data']!r}.")
        if config["regen_lr_schedule"] not in LR_SCHEDULES:
            raise ConfigError(
                f"regen_lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {config['regen_lr_schedule']!r}."
            )
        for key in ("regen_entropy_weight", "regen_view_balance"):
            if config[key] < 0:
                raise ConfigError(f"{key} must be >= 0, got {config[key]}.")
        hidden, self.hidden = config["hidden_size"], config["hidden_size"]
        self.initializer_range = config["initializer_range"]
        self.bos, self.eos = self.n_items, self.n_items + 1
        self.pattern_max_len = config["pattern_max_len"]
        self.inference_mode = config["regen_inference"]
        self.max_len = config["regen_max_len"] if self.inference_mode == "reference" else self.pattern_max_len
        self.source_steps = config["regen_source_steps"]
        self.min_len = config["regen_min_len"]
        self.source_mask = config["regen_source_mask"]
        self.source_tokens_on = config["regen_source_tokens"]
        self.n_conditions = config["regen_conditions"]
        self.entropy_weight = config["regen_entropy_weight"]
        self.view_balance = config["regen_view_balance"]
        self.tau = TAU_START
        self.other_parameter_name = ["tau"]  # the Gumbel temperature's decay goes on after a resume
        self.embedding = nn.Embedding(self.n_items + 2, hidden, padding_idx=0)
        source_width = self.max_seq_length + (2 if self.source_tokens_on else 0)
        self.position = nn.Embedding(max(source_width, self.max_len + 1, self.pattern_max_len + 1), hidden)
        self.dropout = nn.Dropout(config["hidden_dropout_prob"])
        layer_args = dict(
            d_model=hidden,
            nhead=config["n_heads"],
            dim_feedforward=config["inner_size"],
            dropout=config["hidden_dropout_prob"],
            activation=config["hidden_act"],
            batch_first=True,
        )
        self.transformer = nn.Transformer(
            num_encoder_layers=config["n_layers"], num_decoder_layers=config["n_layers"], **layer_args
        )
        if self.n_conditions > 1:  # the diversity promoter
            k = self.n_conditions
            self.condition_views = nn.Sequential(
                nn.Linear(hidden, hidden * k), nn.ReLU(), nn.Linear(hidden * k, hidden * k)
            )
            self.condition_encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(**layer_args), config["n_layers"])
            self.condition_head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, k))
        self.pattern_head = nn.Linear(hidden, hidden)
        # (P, pattern_max_len) mined patterns for the selection head; set by the trainer.
        self.register_buffer("patterns", torch.zeros(0, self.pattern_max_len, dtype=torch.long), persistent=False)
        self.apply(self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    def set_patterns(self, pattern_items):
        self.patterns = torch.as_tensor(pattern_items, dtype=torch.long, device=self.embedding.weight.device)

    def load_item_embedding(self, state_dict, path):
        """Item rows of the shared table from a backbone's ``item_embedding.weight`` (SASRec,
        DuoRec, ...); BOS and EOS keep their random rows. The reference: trained from scratch the
        regenerator "is hard to converge"."""
        weight = state_dict.get("item_embedding.weight")
        if weight is None:
            raise CheckpointError(f"'{path}' has no item_embedding.weight: use a SASRec, DuoRec or RaSeRec checkpoint.")
        if tuple(weight.shape) != (self.n_items, self.hidden):
            raise CheckpointError(
                f"'{path}' has item embeddings of shape {tuple(weight.shape)}; this regenerator needs "
                f"({self.n_items}, {self.hidden}) (hidden_size must match the backbone's)."
            )
        with torch.no_grad():
            self.embedding.weight[: self.n_items] = weight.to(self.embedding.weight)

    def _embed(self, tokens):
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        return self.dropout(self.embedding(tokens) + self.position(positions))

    def wrap_source(self, item_seq):
        """(B, L) items, left-aligned -> (B, L + 2) ``[BOS] + items + [EOS]`` (the reference's source)."""
        lengths = (item_seq > 0).sum(1)
        wrapped = torch.cat(
            [torch.full_like(item_seq[:, :1], self.bos), item_seq, torch.zeros_like(item_seq[:, :1])], 1
        )
        wrapped[torch.arange(len(wrapped), device=wrapped.device), lengths + 1] = self.eos
        return wrapped

    def encode(self, item_seq):
        """(B, L) items, left-aligned -> memory (B, W, H) and its padding mask (B, W), True at
        padding; W is the batch's longest source (the padding after it is cut off). With
        ``regen_source_tokens`` the source is ``[BOS] + items + [EOS]``."""
        item_seq = item_seq[:, : max(int((item_seq > 0).sum(1).max()), 1)]
        if self.source_tokens_on:
            item_seq = self.wrap_source(item_seq)
        padding = item_seq == 0
        padding[:, 0] = False  # an all-padding row would give NaNs
        return self.transformer.encoder(self._embed(item_seq), src_key_padding_mask=padding), padding

    def memory(self, memory, k):
        """The encoder memory seen through condition ``k`` (the diversity promoter's k-th view)."""
        if self.n_conditions == 1:
            return memory
        return self.condition_views(memory).unflatten(-1, (self.n_conditions, self.hidden))[:, :, k]

    def condition_weights(self, prefix):
        """(B, K) soft pick of a view from the decoder input (BOS + target pattern): the condition
        encoder's logits, Gumbel-softmax at the current temperature."""
        logits = self.condition_logits(prefix)
        if self.training:
            self.tau = max(TAU_FLOOR, self.tau * TAU_DECAY)
        return F.gumbel_softmax(logits, tau=self.tau, hard=False)

    def condition_logits(self, prefix):
        """(B, K) the condition encoder's view logits: mean over the pattern, an MLP (no noise)."""
        padding = prefix == 0
        width = prefix.shape[1]
        causal = torch.ones(width, width, dtype=torch.bool, device=prefix.device).triu(1)  # True: not attended
        out = self.condition_encoder(self._embed(prefix), mask=causal, src_key_padding_mask=padding, is_causal=True)
        keep = (~padding).unsqueeze(-1).float()
        return self.condition_head((out * keep).sum(1) / keep.sum(1))

    def decode(self, memory, padding, prefix):
        """Logits (B, T, n_items + 2) of the token after each position of ``prefix`` (B, T)."""
        causal = nn.Transformer.generate_square_subsequent_mask(prefix.shape[1], device=prefix.device)
        out = self.transformer.decoder(
            self._embed(prefix), memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=padding
        )
        return out @ self.embedding.weight.T

    def source_tokens(self, item_seq):
        """(B, n_items + 2) True at the items of each source sequence and at EOS."""
        allowed = torch.zeros(len(item_seq), self.n_items + 2, dtype=torch.bool, device=item_seq.device)
        allowed.scatter_(1, item_seq, True)
        allowed[:, 0] = False
        allowed[:, self.eos] = True
        return allowed

    def selection_scores(self, memory, padding):
        """Scores (B, P) of every mined pattern for each encoded sequence (selective mode)."""
        keep = (~padding).unsqueeze(-1).float()
        summary = (memory * keep).sum(1) / keep.sum(1)
        pattern_keep = (self.patterns > 0).unsqueeze(-1).float()
        pattern_vectors = (self.embedding(self.patterns) * pattern_keep).sum(1) / pattern_keep.sum(1)
        return summary @ self.pattern_head(pattern_vectors).T

    def calculate_loss(self, interaction):
        """Next-token cross-entropy of <sequence, pattern> pairs (teacher forcing), plus the
        condition picks' entropy (diversity promoter), minus the mean pick's (view balance) and,
        for our inference mode, the selection head's cross-entropy."""
        item_seq = interaction[self.ITEM_SEQ]
        memory, padding = self.encode(item_seq)
        pattern = interaction[PATTERN_ITEMS]  # (B, pattern_max_len), 0-padded
        lengths = (pattern > 0).sum(1)
        bos = torch.full_like(pattern[:, :1], self.bos)
        prefix = torch.cat([bos, pattern], 1)
        target = torch.cat([pattern, torch.zeros_like(bos)], 1)
        target[torch.arange(len(target)), lengths] = self.eos
        loss = 0.0
        conditioned = memory
        if self.n_conditions > 1:
            weights = self.condition_weights(prefix)  # (B, K)
            views = self.condition_views(memory).unflatten(-1, (self.n_conditions, self.hidden))
            conditioned = (weights[:, None, :, None] * views).sum(2)
            loss = loss + self.entropy_weight * entropy(weights).mean()
            if self.view_balance:  # spread the picks: the batch's mean pick as even as it can be
                loss = loss - self.view_balance * entropy(weights.mean(0))
        logits = self.decode(conditioned, padding, prefix)
        if self.source_mask:
            logits = logits.masked_fill(~self.source_tokens(item_seq).unsqueeze(1), float("-inf"))
        loss = loss + F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=0)
        if self.inference_mode == "ours":
            loss = loss + F.cross_entropy(self.selection_scores(memory, padding), interaction[PATTERN_INDEX])
        return loss

    def full_sort_predict(self, interaction):
        """First pattern item the decoder expects after a sequence (first view): a diagnostic
        score only (the regenerator's product is the regenerated dataset, not a ranking)."""
        memory, padding = self.encode(interaction[self.ITEM_SEQ])
        bos = torch.full_like(interaction[self.ITEM_SEQ][:, :1], self.bos)
        return self.decode(self.memory(memory, 0), padding, bos)[:, 0, : self.n_items]

    def predict(self, interaction):
        scores = self.full_sort_predict(interaction)
        return scores.gather(1, interaction[self.ITEM_ID].unsqueeze(1)).squeeze(1)
