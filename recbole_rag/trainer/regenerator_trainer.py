"""RegeneratorTrainer: mine patterns -> pre-train the regenerator on <sequence, pattern> pairs ->
hybrid inference -> write ``<dataset>-regen`` (``recbole_rag.regeneration.writer``)."""

import time

import numpy as np
import torch
from recbole.data.interaction import Interaction
from recbole.utils import set_color

from recbole_rag.data import load_dataset
from recbole_rag.model.sequential_recommender.regenerator import PATTERN_INDEX, PATTERN_ITEMS
from recbole_rag.regeneration import inference
from recbole_rag.regeneration.patterns import mine_patterns, sample_occurrences, training_sequences
from recbole_rag.regeneration.writer import find_regenerated, write_regenerated
from recbole_rag.trainer import Trainer


def length_batches(lengths, batch_size):
    """Shuffled batches of row ids, each of rows with similar lengths (less padding to encode)."""
    jitter = torch.rand(len(lengths))
    by_length = torch.argsort(lengths.float() + jitter)
    batches = list(torch.split(by_length, batch_size))
    return [batches[i] for i in torch.randperm(len(batches))]


def last_items(items, offsets, max_len):
    """(U, max_len) the last ``max_len`` items of each sequence, left-aligned, 0-padded."""
    out = np.zeros((len(offsets) - 1, max_len), np.int64)
    for u, (start, stop) in enumerate(zip(offsets[:-1], offsets[1:])):
        tail = items[max(start, stop - max_len) : stop]
        out[u, : len(tail)] = tail
    return out


class RegeneratorTrainer(Trainer):
    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        c, start = self.config, time.perf_counter()
        find_regenerated(c)  # a saved set with other settings stops the run here, before training
        users, items, offsets = training_sequences(train_data.dataset, c)
        patterns = mine_patterns(
            items,
            offsets,
            c["pattern_min_support"],
            c["pattern_min_len"],
            c["pattern_max_len"],
            c["pattern_window"],
        )
        self.logger.info(
            set_color("Patterns", "green") + f": {len(patterns)} mined from {len(users)} training "
            f"sequences in {time.perf_counter() - start:.1f}s"
        )
        self.model.set_patterns(patterns.items)
        sequences = torch.from_numpy(last_items(items, offsets, self.model.max_seq_length))
        chosen = sample_occurrences(patterns.occurrences, c["pattern_pairs_per_sequence"], c["seed"])
        pairs = Interaction(
            {
                self.model.ITEM_SEQ: sequences[chosen[:, 0]],
                PATTERN_ITEMS: torch.from_numpy(patterns.items[chosen[:, 1]]),
                PATTERN_INDEX: torch.from_numpy(chosen[:, 1]),
            }
        )
        lengths = (pairs[self.model.ITEM_SEQ] > 0).sum(1)
        for epoch in range(self.start_epoch, self.epochs):
            batches = [pairs[rows] for rows in length_batches(lengths, c["train_batch_size"])]
            epoch_start = time.perf_counter()
            loss = self._train_epoch(batches, epoch, show_progress=show_progress)
            self.train_loss_dict[epoch] = loss
            if verbose:
                self.logger.info(self._generate_train_loss_output(epoch, epoch_start, time.perf_counter(), loss))
        if saved:
            self._save_checkpoint(self.epochs - 1, verbose=verbose)
        valid_score, valid_result = self._valid_epoch(valid_data, show_progress) if valid_data else (None, None)
        self.best_valid_score, self.best_valid_result = valid_score, valid_result

        regenerated = inference.regenerate(
            self.model, sequences, c["regen_per_user"], c["regen_balance"], c["eval_batch_size"], show_progress
        )
        splits = load_dataset(c).build()
        self.regen_folder = write_regenerated(c, splits, (users, regenerated), patterns, time.perf_counter() - start)
        self.logger.info(
            set_color("Regenerated", "green") + f": {len(pairs)} training pairs, dataset written "
            f"to {self.regen_folder} ({time.perf_counter() - start:.1f}s in all)"
        )
        return valid_score, valid_result
