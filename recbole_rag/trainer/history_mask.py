"""Evaluation with each user's history left out of the ranking, as an option.

RecBole ranks every item for a sequential model, the items already in the user's sequence too;
ICLRec, BSARec and DR4SR's code (``model/basemodel.py``, ``topk``) set the scores of the input
sequence's items to -inf first, so a repeated target counts as a miss there. Their numbers sit on
that line (Beauty NDCG@10 near 0.06, not comparable with RecBole's); ``eval_mask_history: True``
puts any model, ours or RecBole's, on it, at validation and test.
"""

import torch


def history_masked(trainer_class):
    """``trainer_class`` whose full-ranking evaluation scores the input sequence's items -inf."""

    class HistoryMaskedTrainer(trainer_class):
        def _full_sort_batch_eval(self, batched_data):
            interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
            sequence = interaction[self.config["ITEM_ID_FIELD"] + self.config["LIST_SUFFIX"]]  # [B, L], 0 = padding
            scores = scores.scatter(1, sequence.to(scores.device), -torch.inf)  # padding item 0 is -inf already
            return interaction, scores, positive_u, positive_i

    HistoryMaskedTrainer.__name__ = trainer_class.__name__
    return HistoryMaskedTrainer
