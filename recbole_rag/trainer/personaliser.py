"""DR4SR+ (arXiv 2405.17795): the model-aware dataset personaliser, as a trainer around any
sequential model trained with softmax cross-entropy (RecBole's SASRec, GRU4Rec, ...; DuoRec).

Turned on by ``personalise: True`` (the shipped preset ``dr4sr-plus`` sets it and every setting
below, the reference code's values, ``model/metamodel.py`` and ``utils/utils.py``):

* a scorer (MLP on the model's sequence representation -> 2 logits, Gumbel-softmax at
  temperature ``personalise_tau``) gives each training row a weight in (0, 1); rows of mined
  patterns (user ids ``pattern-<i>`` in a regenerated set) keep weight 1;
* after ``personalise_warmup_epochs`` plain epochs, the model trains on the weighted
  cross-entropy (a contrastive term, DuoRec's, stays unweighted);
* every ``personalise_interval`` steps the scorer takes one step on an implicit hyper-gradient:
  the unweighted loss of a fresh training batch (the reference's choice) through the inverse
  Hessian of the weighted loss of another, approximated by ``personalise_neumann_steps`` terms of
  a Neumann series with step ``personalise_neumann_lr`` (AuxiLearn's method, as the reference);
  SGD with ``personalise_lr``, momentum, weight decay, gradient norm clipped to
  ``personalise_grad_clip``.

The reference's batches (``personalise_batch_size``, its training and meta batches alike) are
whole sequences, each trained at every position; a RecBole row is one target. With
``personalise_unit: sequences`` the interval counts such batches and the meta batches hold as
many rows as that many sequences do (the training set's rows per sequence), so a scorer step
sees as much data, and comes as often per epoch, as the reference's; ``rows`` takes both as
RecBole steps and rows.

The scorer is training machinery: checkpoints carry its state for resuming, and the model they
hold is the plain model (inference is unchanged).
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recbole_rag.checkpoint import load_checkpoint
from recbole_rag.errors import ConfigError
from recbole_rag.model.sequential_recommender.duorec import DuoRec

SETTINGS = (
    "personalise_warmup_epochs",
    "personalise_interval",
    "personalise_neumann_steps",
    "personalise_neumann_lr",
    "personalise_lr",
    "personalise_momentum",
    "personalise_weight_decay",
    "personalise_tau",
    "personalise_grad_clip",
    "personalise_batch_size",
    "personalise_unit",
)
UNITS = ("sequences", "rows")
# RecBole models whose CE loss is forward(item_seq, item_seq_len) . item_embedding and nothing else.
RECBOLE_MODELS = ("SASRec", "GRU4Rec", "NARM", "STAMP", "SRGNN")
PATTERN_USER_PREFIX = "pattern-"  # regenerated sets write each mined pattern under such a user id


class RowScorer(nn.Module):
    """Weight of each training row from the model's representation of its sequence."""

    def __init__(self, hidden_size, tau):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, 2))
        for layer in (self.mlp[0], self.mlp[2]):  # the reference's normal_initialization
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)
        self.tau = tau

    def forward(self, representation):
        return F.gumbel_softmax(self.mlp(representation), tau=self.tau, hard=False)[:, 0]

    def probability(self, representation):
        """The weight without the Gumbel noise: what the scorer itself has learned."""
        return F.softmax(self.mlp(representation) / self.tau, dim=-1)[:, 0]


def pattern_users(dataset):
    """(n_users,) bool: the user ids under which a regenerated set writes its mined patterns."""
    tokens = np.asarray(dataset.field2id_token[dataset.uid_field], dtype=str)
    return torch.from_numpy(np.char.startswith(tokens, PATTERN_USER_PREFIX))


def loss_parts(model, interaction):
    """(per-row cross-entropy (B,), sequence representation (B, H), unweighted extra term)."""
    if hasattr(model, "views") and hasattr(model, "contrastive_loss"):  # DuoRec: one stacked pass
        views = model.views(interaction)
        representation, extra = views[0], model.contrastive_loss(views)
    else:
        representation = model.forward(interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN])
        extra = representation.new_zeros(())
    logits = representation @ model.item_embedding.weight.T
    return F.cross_entropy(logits, interaction[model.POS_ITEM_ID], reduction="none"), representation, extra


def check_personalisable(config, model):
    """A one-line error unless ``model`` trains with cross-entropy over all items from
    ``forward(item_seq, item_seq_len) . item_embedding`` with nothing else but DuoRec's term."""
    duorec_family = isinstance(model, DuoRec) and type(model).calculate_loss is DuoRec.calculate_loss
    recbole_model = type(model).__name__ in RECBOLE_MODELS and type(model).__module__.startswith("recbole.model")
    if not (duorec_family or recbole_model) or config["loss_type"] != "CE" or not hasattr(model, "item_embedding"):
        raise ConfigError(
            f"personalise (DR4SR+) wraps a sequential model trained with loss_type CE whose scores are its "
            f"sequence vector . item_embedding ({', '.join(RECBOLE_MODELS)}, DuoRec); {config['model']} with "
            f"loss_type {config['loss_type']} is not one."
        )
    missing = [key for key in SETTINGS if config[key] is None]
    if missing:
        raise ConfigError(
            f"personalise needs {', '.join(missing)}: add --config_files=dr4sr-plus (the reference's values)."
        )
    if config["personalise_unit"] not in UNITS:
        raise ConfigError(f"personalise_unit must be one of {', '.join(UNITS)}, got {config['personalise_unit']!r}.")
    for key in ("personalise_interval", "personalise_batch_size"):
        if config[key] < 1:
            raise ConfigError(f"{key} must be >= 1, got {config[key]}.")


def in_rows(interval, batch_size, rows_per_sequence, train_batch_size):
    """The reference's interval (batches of ``batch_size`` whole sequences) and meta batch size
    (sequences) -> (steps of ``train_batch_size`` rows, rows)."""
    rows = batch_size * rows_per_sequence
    return max(1, round(interval * rows / train_batch_size)), max(1, round(rows))


class PersonaliserMixin:
    """Put before a trainer class (``personalised``) to train its model on personalised weights."""

    def __init__(self, config, model):
        super().__init__(config, model)
        check_personalisable(config, model)
        c = {key: config[key] for key in SETTINGS}
        self.warmup_epochs, self.unit = c["personalise_warmup_epochs"], c["personalise_unit"]
        self.interval, self.meta_batch_size = c["personalise_interval"], c["personalise_batch_size"]
        self.neumann_steps, self.neumann_lr = c["personalise_neumann_steps"], c["personalise_neumann_lr"]
        self.grad_clip = c["personalise_grad_clip"]
        hidden = model.item_embedding.weight.shape[1]
        self.scorer = RowScorer(hidden, max(c["personalise_tau"], 1.0)).to(self.device)  # the reference's floor 1
        self.meta_optimizer = torch.optim.SGD(
            self.scorer.parameters(),
            lr=c["personalise_lr"],
            momentum=c["personalise_momentum"],
            weight_decay=c["personalise_weight_decay"],
        )
        self.meta_steps_done, self.steps_after_warmup = 0, 0
        self.pattern_user = None  # (n_users,) bool, set from the training data in fit
        self.train_rows = None
        self.weight_sums = torch.zeros(3, device=self.device)  # count, sum, sum of squares

    def fit(self, train_data, *args, **kwargs):
        dataset = train_data.dataset
        self.pattern_user = pattern_users(dataset).to(self.device)
        self.train_rows = dataset.inter_feat
        if self.unit == "sequences":
            per_sequence = len(self.train_rows) / len(torch.unique(self.train_rows[dataset.uid_field]))
            c = self.config
            self.interval, self.meta_batch_size = in_rows(
                c["personalise_interval"], c["personalise_batch_size"], per_sequence, train_data.batch_size
            )
            self.logger.info(
                f"DR4SR+: {per_sequence:.2f} training rows per sequence: a scorer step every {self.interval} "
                f"steps, on batches of {self.meta_batch_size} rows"
            )
        return super().fit(train_data, *args, **kwargs)

    def row_weights(self, interaction, representation):
        weights = self.scorer(representation)
        fixed = self.pattern_user[interaction[self.model.USER_ID]]
        return torch.where(fixed, torch.ones_like(weights), weights)

    def weighted_loss(self, interaction):
        ce, representation, extra = loss_parts(self.model, interaction)
        weights = self.row_weights(interaction, representation)
        return (weights * ce).mean() + extra, weights

    def weight_summary(self):
        """'mean m, std s over n rows' of the weights the scorer gave this epoch's training rows
        (pattern rows, fixed at 1, left out): what the personaliser did, for the log."""
        n, total, squares = self.weight_sums.tolist()
        mean = total / max(n, 1)
        std = max(squares / max(n, 1) - mean**2, 0.0) ** 0.5
        return f"mean {mean:.4f}, std {std:.4f} over {int(n)} rows"

    def _random_batch(self):
        rows = torch.randint(len(self.train_rows), (self.meta_batch_size,))
        return self.train_rows[rows].to(self.device)

    def meta_step(self):
        """One scorer step on the implicit hyper-gradient (module docstring). cuDNN's RNNs have
        no second derivative (GRU4Rec on a GPU): they run without cuDNN here, as the reference."""
        with torch.backends.cudnn.flags(enabled=False):
            self._meta_step()

    def _meta_step(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        ce, _, extra = loss_parts(self.model, self._random_batch())
        outer = ce.mean() + extra
        g_outer = torch.autograd.grad(outer, params, allow_unused=True)
        g_outer = [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, g_outer)]
        inner, _ = self.weighted_loss(self._random_batch())
        g_inner = torch.autograd.grad(inner, params, create_graph=True, allow_unused=True)
        kept = [i for i, g in enumerate(g_inner) if g is not None]
        g_inner = [g_inner[i] for i in kept]
        v = [g_outer[i] for i in kept]
        p = list(v)
        for _ in range(self.neumann_steps):  # p = sum_j (I - lr H)^j g_outer, H the inner Hessian
            hv = torch.autograd.grad(g_inner, [params[i] for i in kept], grad_outputs=v, retain_graph=True)
            v = [vi - self.neumann_lr * h for vi, h in zip(v, hv)]
            p = [pi + vi for pi, vi in zip(p, v)]
        hyper = torch.autograd.grad(g_inner, list(self.scorer.parameters()), grad_outputs=p, allow_unused=True)
        self.meta_optimizer.zero_grad()
        for param, g in zip(self.scorer.parameters(), hyper):
            param.grad = None if g is None else -g
        nn.utils.clip_grad_norm_(self.scorer.parameters(), self.grad_clip)
        self.meta_optimizer.step()
        self.meta_steps_done += 1

    def _personalised_loss(self, interaction):
        self.steps_after_warmup += 1
        if self.steps_after_warmup % self.interval == 0:
            self.meta_step()  # before this step's graph is built: the scorer changes in place
        loss, weights = self.weighted_loss(interaction)
        scored = (~self.pattern_user[interaction[self.model.USER_ID]]).float()  # masked sums: no host sync
        w = weights.detach().float()
        self.weight_sums += torch.stack([scored.sum(), (w * scored).sum(), (w.square() * scored).sum()])
        return loss

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if epoch_idx < self.warmup_epochs:
            return super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
        self.weight_sums.zero_()
        loss = super()._train_epoch(train_data, epoch_idx, self._personalised_loss, show_progress)
        self.logger.info(
            f"DR4SR+ epoch {epoch_idx}: row weights {self.weight_summary()}; {self.meta_steps_done} scorer steps so far"
        )
        return loss

    def _state(self, epoch):
        state = super()._state(epoch)
        state["personaliser"] = {
            "scorer": self.scorer.state_dict(),
            "optimizer": self.meta_optimizer.state_dict(),
            "steps_after_warmup": self.steps_after_warmup,
            "meta_steps_done": self.meta_steps_done,
        }
        return state

    def resume_checkpoint(self, resume_file):
        super().resume_checkpoint(resume_file)
        saved = load_checkpoint(resume_file, map_location=self.device).get("personaliser")
        if saved:
            self.scorer.load_state_dict(saved["scorer"])
            self.meta_optimizer.load_state_dict(saved["optimizer"])
            self.steps_after_warmup, self.meta_steps_done = saved["steps_after_warmup"], saved["meta_steps_done"]


def personalised(trainer_class):
    """``trainer_class`` training its model on DR4SR+'s personalised row weights."""
    return type(f"Personalised{trainer_class.__name__}", (PersonaliserMixin, trainer_class), {})
