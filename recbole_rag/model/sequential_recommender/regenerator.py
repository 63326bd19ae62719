"""Regenerator (DR4SR, arXiv 2405.17795): a transformer encoder-decoder that maps a user's
training sequence to the item-transition patterns mined from it.

Two heads, one per inference mode: the decoder generates a pattern item by item (generative
mode), and a selection head scores every mined pattern against the encoded sequence (selective
mode). Trained on <sequence, pattern> pairs by ``RegeneratorTrainer`` with the sum of both
cross-entropies; ``recbole_rag.regeneration.inference`` mixes the modes.

Tokens: 0 padding, 1 .. n_items - 1 items (RecBole's ids), then BOS and EOS.
"""

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from torch import nn

from recbole_rag.errors import ConfigError

PATTERN_ITEMS, PATTERN_INDEX = "pattern_items", "pattern_index"


class Regenerator(SequentialRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        if not 0.0 <= config["regen_balance"] <= 1.0:
            raise ConfigError(f"regen_balance must be in [0, 1], got {config['regen_balance']}.")
        if not isinstance(config["regen_per_user"], int) or config["regen_per_user"] < 1:
            raise ConfigError(f"regen_per_user must be an integer >= 1, got {config['regen_per_user']!r}.")
        hidden = config["hidden_size"]
        self.initializer_range = config["initializer_range"]
        self.bos, self.eos = self.n_items, self.n_items + 1
        self.pattern_max_len = config["pattern_max_len"]
        self.embedding = nn.Embedding(self.n_items + 2, hidden, padding_idx=0)
        self.position = nn.Embedding(max(self.max_seq_length, self.pattern_max_len + 1), hidden)
        self.transformer = nn.Transformer(
            d_model=hidden,
            nhead=config["n_heads"],
            num_encoder_layers=config["n_layers"],
            num_decoder_layers=config["n_layers"],
            dim_feedforward=config["inner_size"],
            dropout=config["hidden_dropout_prob"],
            activation=config["hidden_act"],
            batch_first=True,
        )
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

    def _embed(self, tokens):
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        return self.embedding(tokens) + self.position(positions)

    def encode(self, item_seq):
        """(B, L) items, left-aligned -> memory (B, W, H) and its padding mask (B, W), True at
        padding; W is the batch's longest sequence (the padding after it is cut off)."""
        item_seq = item_seq[:, : max(int((item_seq > 0).sum(1).max()), 1)]
        padding = item_seq == 0
        padding[:, 0] = False  # an all-padding row would give NaNs
        return self.transformer.encoder(self._embed(item_seq), src_key_padding_mask=padding), padding

    def decode(self, memory, padding, prefix):
        """Logits (B, T, n_items + 2) of the token after each position of ``prefix`` (B, T)."""
        causal = nn.Transformer.generate_square_subsequent_mask(prefix.shape[1], device=prefix.device)
        out = self.transformer.decoder(
            self._embed(prefix), memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=padding
        )
        return out @ self.embedding.weight.T

    def selection_scores(self, memory, padding):
        """Scores (B, P) of every mined pattern for each encoded sequence (selective mode)."""
        keep = (~padding).unsqueeze(-1).float()
        summary = (memory * keep).sum(1) / keep.sum(1)
        pattern_keep = (self.patterns > 0).unsqueeze(-1).float()
        pattern_vectors = (self.embedding(self.patterns) * pattern_keep).sum(1) / pattern_keep.sum(1)
        return summary @ self.pattern_head(pattern_vectors).T

    def calculate_loss(self, interaction):
        """Generative + selective cross-entropy of <sequence, pattern> pairs."""
        memory, padding = self.encode(interaction[self.ITEM_SEQ])
        pattern = interaction[PATTERN_ITEMS]  # (B, pattern_max_len), 0-padded
        lengths = (pattern > 0).sum(1)
        bos = torch.full_like(pattern[:, :1], self.bos)
        prefix = torch.cat([bos, pattern], 1)
        target = torch.cat([pattern, torch.zeros_like(bos)], 1)
        target[torch.arange(len(target)), lengths] = self.eos
        logits = self.decode(memory, padding, prefix)
        generative = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=0)
        selective = F.cross_entropy(self.selection_scores(memory, padding), interaction[PATTERN_INDEX])
        return generative + selective

    def full_sort_predict(self, interaction):
        """First pattern item the decoder expects after a sequence: a diagnostic score only
        (the regenerator's product is the regenerated dataset, not a ranking)."""
        memory, padding = self.encode(interaction[self.ITEM_SEQ])
        bos = torch.full_like(interaction[self.ITEM_SEQ][:, :1], self.bos)
        return self.decode(memory, padding, bos)[:, 0, : self.n_items]

    def predict(self, interaction):
        scores = self.full_sort_predict(interaction)
        return scores.gather(1, interaction[self.ITEM_ID].unsqueeze(1)).squeeze(1)
