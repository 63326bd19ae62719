"""GRU4Rec's encoder (Hidasi et al. 2016, as RecBole's GRU4Rec): item embedding -> dropout -> GRU ->
linear back to the embedding size; the output at each sequence's last real position."""

import torch
from torch import nn


class GRUEncoder(nn.Module):
    def __init__(self, n_items, hidden_size=64, gru_hidden_size=128, num_layers=1, dropout_prob=0.3):
        super().__init__()
        self.item_embedding = nn.Embedding(n_items, hidden_size, padding_idx=0)
        self.emb_dropout = nn.Dropout(dropout_prob)
        self.gru = nn.GRU(hidden_size, gru_hidden_size, num_layers=num_layers, bias=False, batch_first=True)
        self.dense = nn.Linear(gru_hidden_size, hidden_size)
        nn.init.xavier_normal_(self.item_embedding.weight)
        for weight in self.gru.parameters():
            nn.init.xavier_uniform_(weight)

    @classmethod
    def from_config(cls, config, n_items, max_seq_length):
        return cls(
            n_items, config["hidden_size"], config["gru_hidden_size"], config["gru_layers"], config["dropout_prob"]
        )

    def forward(self, item_seq, item_seq_len):
        """(batch, max_len) item ids, (batch,) lengths -> (batch, hidden) user vectors."""
        length = max(int(item_seq_len.max()), 1)
        x = self.emb_dropout(self.item_embedding(item_seq[:, :length]))
        out = self.gru(x)[0]
        last = (item_seq_len - 1).clamp(min=0)
        return self.dense(out[torch.arange(out.shape[0], device=out.device), last])  # dense on last only
