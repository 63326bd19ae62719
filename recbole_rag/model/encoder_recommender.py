"""EncoderRecommender: the part our sequential models share. A sequence encoder (``self.encoder``,
set by the subclass: item ids and lengths -> (batch, hidden) user vectors) whose item embedding
scores every item (user vector . item embedding), trained with softmax cross-entropy over all
items; DuoRec, RaSeRec and SRACL differ only in what they add to that loss."""

from recbole.model.abstract_recommender import SequentialRecommender

from recbole_rag.errors import ConfigError


class EncoderRecommender(SequentialRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        if config["loss_type"] != "CE":
            raise ConfigError(f"{type(self).__name__} trains with loss_type CE, got {config['loss_type']}.")

    @property
    def item_embedding(self):
        return self.encoder.item_embedding

    def forward(self, item_seq, item_seq_len):
        return self.encoder(item_seq, item_seq_len)

    def predict(self, interaction):
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return (seq_output * self.item_embedding(interaction[self.ITEM_ID])).sum(-1)

    def full_sort_predict(self, interaction):
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return seq_output @ self.item_embedding.weight.T
