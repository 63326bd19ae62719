"""Binary cross-entropy against sampled negatives (``loss_type: BCE``) for RecBole's sequential
models that score a user vector against their item table (SASRec, GRU4Rec): the loss SASRec's
paper and DR4SR's reference code train with (``model/loss_func.py``: -log sigma(pos) and
softplus(neg), each averaged). RecBole's models implement CE and BPR only."""

import functools

import torch.nn.functional as F

from recbole_rag.errors import ConfigError

BCE_MODELS = ("SASRec", "GRU4Rec")  # forward(item_seq, item_seq_len) -> user vector; scores: . item_embedding


@functools.cache
def with_bce(model_class):
    """``model_class`` trained with BCE on the training loader's sampled negatives (one row's
    negative per positive, ``train_neg_sample_args``); scoring, prediction and checkpoints as
    the model's own."""
    if model_class.__name__ not in BCE_MODELS:
        raise ConfigError(
            f"loss_type BCE is for {', '.join(BCE_MODELS)} (a user vector scored against the item table), "
            f"not {model_class.__name__}."
        )

    class BCEModel(model_class):
        def __init__(self, config, dataset):
            config["loss_type"] = "BPR"  # RecBole's constructor accepts CE and BPR; BPR's layers are BCE's
            try:
                super().__init__(config, dataset)
            finally:
                config["loss_type"] = "BCE"
            self.loss_type = "BCE"

        def calculate_loss(self, interaction):
            user = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
            pos = (user * self.item_embedding(interaction[self.POS_ITEM_ID])).sum(-1)
            neg = (user * self.item_embedding(interaction[self.NEG_ITEM_ID])).sum(-1)
            return -F.logsigmoid(pos).mean() + F.softplus(neg).mean()

    BCEModel.__name__ = BCEModel.__qualname__ = model_class.__name__
    BCEModel.__doc__ = f"{model_class.__name__} trained with BCE on sampled negatives (recbole_rag.model.bce)."
    return BCEModel
