"""RegeneratorTrainer: mine patterns -> pre-train the regenerator on <sequence, pattern> pairs ->
hybrid inference -> write ``<dataset>-regen`` (``recbole_rag.regeneration.writer``)."""

import itertools
import math
import os
import time

import numpy as np
import torch
from recbole.data.interaction import Interaction
from recbole.utils import set_color

from recbole_rag.checkpoint import check_same_items, load_checkpoint
from recbole_rag.data import load_dataset
from recbole_rag.errors import ConfigError
from recbole_rag.model.sequential_recommender.regenerator import PATTERN_INDEX, PATTERN_ITEMS
from recbole_rag.regeneration import inference
from recbole_rag.regeneration.patterns import mine_configured, sample_occurrences, sequence_stats, training_sequences
from recbole_rag.regeneration.writer import ADDED_REGEN_KEYS, distinct_patterns, find_regenerated, write_regenerated
from recbole_rag.trainer import Trainer


def check_same_source_tokens(checkpoint, config, path):
    """A clear error when a regenerator resumes under another source encoding than it trained
    with (one saved before ``regen_source_tokens`` existed read the items alone)."""
    saved = (checkpoint.get("config") or {}).get("regen_source_tokens", ADDED_REGEN_KEYS["regen_source_tokens"])
    if saved != config["regen_source_tokens"]:
        raise ConfigError(
            f"'{path}' was trained with regen_source_tokens {saved}: resume it with --regen_source_tokens={saved}."
        )


def length_batches(lengths, batch_size):
    """Shuffled batches of row ids, each of rows with similar lengths (less padding to encode)."""
    jitter = torch.rand(len(lengths))
    by_length = torch.argsort(lengths.float() + jitter)
    batches = list(torch.split(by_length, batch_size))
    return [batches[i] for i in torch.randperm(len(batches))]


def cosine_lr(base, epoch, epochs):
    """The reference's cosine schedule over the epochs (its code steps it per batch: see
    docs/dr4sr.md), in closed form, so a resumed run sets the rate of any epoch directly."""
    return base * 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))


def last_items(items, offsets, max_len):
    """(U, max_len) the last ``max_len`` items of each sequence, left-aligned, 0-padded."""
    out = np.zeros((len(offsets) - 1, max_len), np.int64)
    for u, (start, stop) in enumerate(zip(offsets[:-1], offsets[1:])):
        tail = items[max(start, stop - max_len) : stop]
        out[u, : len(tail)] = tail
    return out


def within_sources(sources, patterns):
    """(O,) True where occurrence o's pattern lies inside its sequence's source row (the last
    max_seq_length items), as the reference keeps only patterns that are sub-lists of the source."""
    rows, which = patterns.occurrences[:, 0], patterns.occurrences[:, 1]
    inside = np.ones(len(rows), dtype=bool)
    for start in range(0, len(rows), 65536):  # (chunk, pattern length, source length) at a time
        part = slice(start, start + 65536)
        items = patterns.items[which[part]]
        found = (items[:, :, None] == sources[rows[part]][:, None, :]).any(-1) | (items == 0)
        inside[part] = found.all(1)
    return inside


class RegeneratorTrainer(Trainer):
    def _build_optimizer(self, **kwargs):
        """Adam with the reference's betas (0.9, 0.98) and eps 1e-9 (a transformer's usual)."""
        params = kwargs.pop("params", self.model.parameters())
        return torch.optim.Adam(
            params, lr=self.learning_rate, betas=(0.9, 0.98), eps=1e-9, weight_decay=self.weight_decay
        )

    def _set_lr(self, lr):
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _batch_schedule(self, first_step):
        """The model's loss that first sets the rate of the reference's per-batch schedule: its
        CosineAnnealingLR(T_max=epochs) stepped every batch is this closed form at the global step."""
        steps = itertools.count(first_step)

        def loss(interaction):
            self._set_lr(cosine_lr(self.learning_rate, next(steps), self.epochs))
            return self.model.calculate_loss(interaction)

        return loss

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        c, start = self.config, time.perf_counter()
        if c["pretrained_path"]:
            raise ConfigError(
                "the Regenerator does not take pretrained_path: its item table starts from a backbone's "
                "checkpoint with regen_item_embedding, and resume_path continues a stopped pre-training."
            )
        find_regenerated(c)  # a saved set with other settings stops the run here, before training
        users, items, offsets = training_sequences(train_data.dataset, c)
        patterns = mine_configured(items, offsets, c)
        self.logger.info(
            set_color("Patterns", "green") + f": {len(patterns)} mined from {len(users)} training "
            f"sequences in {time.perf_counter() - start:.1f}s"
        )
        self.model.set_patterns(patterns.items)
        self.know_items(train_data.dataset)
        if c["resume_path"]:  # the weights, optimizer, epoch and random states of the stopped run
            check_same_source_tokens(load_checkpoint(c["resume_path"]), c, c["resume_path"])
            self.resume_checkpoint(c["resume_path"])
            self.restore_random_states(train_data)
        elif c["regen_item_embedding"]:
            path = c["regen_item_embedding"]
            checkpoint = load_checkpoint(path)
            check_same_items(checkpoint, train_data.dataset, path)
            self.model.load_item_embedding(checkpoint["state_dict"], path)
        sequences = torch.from_numpy(last_items(items, offsets, self.model.max_seq_length))
        inside = within_sources(sequences.numpy(), patterns)  # a long user's early patterns fall outside
        chosen = sample_occurrences(patterns.occurrences[inside], c["pattern_pairs_per_sequence"], c["seed"])
        pairs = Interaction(
            {
                self.model.ITEM_SEQ: sequences[chosen[:, 0]],
                PATTERN_ITEMS: torch.from_numpy(patterns.items[chosen[:, 1]]),
                PATTERN_INDEX: torch.from_numpy(chosen[:, 1]),
            }
        )
        lengths = (pairs[self.model.ITEM_SEQ] > 0).sum(1)
        for epoch in range(self.start_epoch, self.epochs):
            self._set_lr(cosine_lr(self.learning_rate, epoch, self.epochs))
            batches = [pairs[rows] for rows in length_batches(lengths, c["train_batch_size"])]
            epoch_start = time.perf_counter()
            loss_func = self._batch_schedule(epoch * len(batches)) if c["regen_lr_schedule"] == "batch" else None
            loss = self._train_epoch(batches, epoch, loss_func=loss_func, show_progress=show_progress)
            self.train_loss_dict[epoch] = loss
            if verbose:
                self.logger.info(self._generate_train_loss_output(epoch, epoch_start, time.perf_counter(), loss))
            if saved:  # each epoch's state, so resume_path continues a stopped pre-training
                self._save_last(epoch, train_data)
        written = os.path.isfile(self.saved_model_file) and os.path.getsize(self.saved_model_file) > 0
        if saved and (self.start_epoch < self.epochs or not written):  # empty: claimed, killed before its write
            self._save_checkpoint(self.epochs - 1, verbose=verbose)  # a finished run resumed keeps its file
        valid_score, valid_result = self._valid_epoch(valid_data, show_progress) if valid_data else (None, None)
        self.best_valid_score, self.best_valid_result = valid_score, valid_result

        if c["regen_inference"] == "reference":
            regenerated = inference.regenerate_sequences(self.model, sequences, c["eval_batch_size"], show_progress)
        else:
            regenerated = (
                users,
                inference.regenerate(
                    self.model, sequences, c["regen_per_user"], c["regen_balance"], c["eval_batch_size"], show_progress
                ),
            )
        produced = regenerated if isinstance(regenerated, list) else distinct_patterns(regenerated[1])
        stats = sequence_stats(produced, items, offsets)
        self.logger.info(
            set_color("Regenerated", "green") + f": {len(produced)} distinct sequences, lengths {stats['lengths']}, "
            f"{stats['novel_share']:.1%} of them nowhere in the training sequences"
        )
        if self.model.n_conditions > 1:  # whether the diversity promoter's views specialised
            stats["view_picks"] = inference.view_picks(self.model, patterns.items, c["eval_batch_size"]).tolist()
            self.logger.info(
                set_color("Views", "green") + f": the {len(patterns)} mined patterns by the view the condition "
                f"encoder picks: {' / '.join(map(str, stats['view_picks']))}"
            )
        splits = load_dataset(c).build()
        self.regen_folder = write_regenerated(c, splits, regenerated, patterns, time.perf_counter() - start, stats)
        self.logger.info(
            set_color("Regenerated", "green") + f": {len(pairs)} training pairs, dataset written "
            f"to {self.regen_folder} ({time.perf_counter() - start:.1f}s in all)"
        )
        return valid_score, valid_result
