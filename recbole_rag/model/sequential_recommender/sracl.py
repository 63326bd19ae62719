"""SRA-CL (Cui et al., arXiv 2503.04162): semantic retrieval augmented contrastive learning.

A sequential encoder (``backbone``: SASRec or GRU4Rec) trained with cross-entropy over all items
plus two contrastive terms built from semantic vectors of items and users (recbole_rag.semantic):

* cross-sequence: each user's ``user_k`` semantically nearest other users (faiss); a learnable
  graph attention over their semantic vectors weighs their sequence representations into one
  synthesised positive; InfoNCE against the other rows of the batch, weight ``cross_weight``.
  With ``cross_retrieval: prefix`` (the authors' code) the unit retrieved is a training prefix
  instead of a user: each training row's nearest other training rows by the mean semantic vector
  of their items, the same user's other prefixes included;
* intra-sequence: two views of each sequence in which every item is replaced, at rate
  ``substitute_rate``, by one of its ``substitute_k`` semantically nearest items; InfoNCE,
  weight ``intra_weight``.

Both InfoNCE terms use similarity ``sim`` (dot or cos) at temperature ``tau``.

The semantic tables are filled by ``prepare`` (SRACLTrainer calls it once before training); they
are not parameters, so checkpoints hold only the encoder and the synthesis module (which prepare
builds, as its input size is the semantic vectors'; load a checkpoint after prepare).
"""

import torch
import torch.nn.functional as F
from recbole.data.interaction import Interaction
from torch import nn

from recbole_rag.errors import ConfigError, is_count
from recbole_rag.model.encoder_recommender import EncoderRecommender
from recbole_rag.model.gru_encoder import GRUEncoder
from recbole_rag.model.layers import SASRecEncoder
from recbole_rag.model.sequential_recommender.duorec import info_nce
from recbole_rag.semantic import nearest_neighbours

BACKBONES = {"SASRec": SASRecEncoder, "GRU4Rec": GRUEncoder}
CROSS_VIEWS = ("encode", "memory")
CROSS_ANCHORS = ("shared", "separate")  # the cross term's anchor: the CE pass's output, or a pass of its own
NEIGHBOUR_SEARCHES = ("auto", "exact")  # semantic neighbours: IVF past 50,000 vectors, or exact always
CROSS_RETRIEVALS = ("user", "prefix")
PREFIX_SEMANTICS = ("items", "text")  # a prefix's vector: the mean of its items', or its own text's
PREFIX_ID = "sracl_prefix_id"  # a training row's index, added to the training set by prepare()


def anchored_info_nce(anchor, positive, temperature, similarity="dot"):
    """InfoNCE with the anchors as the only queries: anchor b against every positive and every
    other anchor of the batch, positive b the target. For ``cross_view: memory``, whose positives
    are built from detached representations: in the symmetric form their rows hold
    positive-positive similarities that are constants, which the encoder can always outweigh by
    growing every representation along the positives' shared direction; refreshed each epoch,
    that loop made the training loss diverge (an early Beauty run: about ninefold in 10 epochs)."""
    if similarity == "cos":
        anchor, positive = F.normalize(anchor, dim=-1), F.normalize(positive, dim=-1)
    sim = anchor @ torch.cat([positive, anchor]).T / temperature
    batch = anchor.shape[0]
    sim[:, batch:].fill_diagonal_(float("-inf"))  # an anchor is not its own negative
    return F.cross_entropy(sim, torch.arange(batch, device=anchor.device))


class PositiveSynthesis(nn.Module):
    """The learnable sample synthesiser (as GAT and the reference code): a score
    LeakyReLU(a . [W s_anchor ; W s_j]) from the semantic vectors s of the anchor user and each
    retrieved user j, softmax over j (with dropout), then the weighted sum of the retrieved users'
    representations."""

    def __init__(self, semantic_size, hidden_size, dropout_prob):
        super().__init__()
        self.project = nn.Parameter(torch.empty(semantic_size, hidden_size))
        self.score = nn.Parameter(torch.empty(2 * hidden_size, 1))
        nn.init.xavier_uniform_(self.project, gain=1.414)
        nn.init.xavier_uniform_(self.score, gain=1.414)
        self.dropout_prob = dropout_prob

    def forward(self, anchor_semantic, retrieved_semantic, retrieved):
        """(batch, d_sem) anchor's and (batch, k, d_sem) retrieved users' semantic vectors,
        (batch, k, hidden) retrieved users' representations -> (batch, hidden) positive."""
        anchor = (anchor_semantic @ self.project).unsqueeze(1).expand(-1, retrieved.shape[1], -1)
        pairs = torch.cat([anchor, retrieved_semantic @ self.project], dim=-1)
        weights = F.leaky_relu((pairs @ self.score).squeeze(-1), 0.2).softmax(-1)
        weights = F.dropout(weights, self.dropout_prob, self.training)
        return (weights.unsqueeze(-1) * retrieved).sum(1)


class SRACL(EncoderRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        if config["backbone"] not in BACKBONES:
            raise ConfigError(f"backbone must be one of {', '.join(BACKBONES)}, got {config['backbone']!r}.")
        if config["cross_view"] not in CROSS_VIEWS:
            raise ConfigError(f"cross_view must be one of {', '.join(CROSS_VIEWS)}, got {config['cross_view']!r}.")
        if config["cross_retrieval"] not in CROSS_RETRIEVALS:
            raise ConfigError(
                f"cross_retrieval must be one of {', '.join(CROSS_RETRIEVALS)}, got {config['cross_retrieval']!r}."
            )
        for key in ("cross_weight", "intra_weight"):
            if config[key] < 0:
                raise ConfigError(f"{key} must be >= 0, got {config[key]}.")
        if not 0 <= config["substitute_rate"] <= 1:
            raise ConfigError(f"substitute_rate must be in [0, 1], got {config['substitute_rate']}.")
        if not 0 <= config["synthesis_dropout"] < 1:
            raise ConfigError(f"synthesis_dropout must be in [0, 1), got {config['synthesis_dropout']}.")
        for key in ("tau", "user_k", "substitute_k"):
            if config[key] <= 0:
                raise ConfigError(f"{key} must be > 0, got {config[key]}.")
        for key, choices in (("cross_anchor", CROSS_ANCHORS), ("neighbour_search", NEIGHBOUR_SEARCHES)):
            if config[key] not in choices:
                raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {config[key]!r}.")
        if config["backbone"] == "GRU4Rec" and config["position_from"] not in (None, "start"):
            raise ConfigError(
                f"position_from: {config['position_from']} is the SASRec backbone's; GRU4Rec reads no positions."
            )
        if config["sim"] not in ("dot", "cos"):
            raise ConfigError(f"sim must be dot or cos, got {config['sim']!r}.")
        if config["prefix_semantics"] not in PREFIX_SEMANTICS:
            raise ConfigError(
                f"prefix_semantics must be one of {', '.join(PREFIX_SEMANTICS)}, got {config['prefix_semantics']!r}."
            )
        histories = config["item_text_histories"]
        if not is_count(histories):
            raise ConfigError(f"item_text_histories must be an integer >= 0, got {histories!r}.")
        self.cross_weight, self.intra_weight, self.tau = config["cross_weight"], config["intra_weight"], config["tau"]
        self.similarity = config["sim"]
        self.user_k, self.substitute_k = config["user_k"], config["substitute_k"]
        self.substitute_rate, self.cross_view = config["substitute_rate"], config["cross_view"]
        self.cross_retrieval = config["cross_retrieval"]
        self.separate_anchor = config["cross_anchor"] == "separate"
        self.exact_neighbours = config["neighbour_search"] == "exact"
        self.prefix_texts = self.cross_retrieval == "prefix" and config["prefix_semantics"] == "text"
        self.unit_field = self.USER_ID if self.cross_retrieval == "user" else PREFIX_ID
        self.n_users = dataset.num(self.USER_ID)
        self.encoder = BACKBONES[config["backbone"]].from_config(config, self.n_items, self.max_seq_length)
        self.synthesis = None  # built by prepare(), once the semantic vectors' size is known
        self.synthesis_dropout = config["synthesis_dropout"]
        # Filled by prepare(); non-persistent, so checkpoints stay encoder + synthesis. A "unit" is
        # what the cross term retrieves: a user, or a training prefix (cross_retrieval).
        for name in ("item_neighbours", "unit_neighbours", "unit_seq", "unit_seq_len", "unit_memory", "unit_semantic"):
            self.register_buffer(name, torch.zeros(0, dtype=torch.long), persistent=False)
        self.semantic_source = None
        # training-loss term -> (detached sum, batches) since reset_terms(), for the epoch log; kept
        # as tensors so that a step never waits on the device for it
        self.term_sums = {}

    def reset_terms(self):
        """Start a new tally of the loss terms; returns the last one's mean per batch."""
        means = {term: total.item() / count for term, (total, count) in self.term_sums.items()}
        self.term_sums = {}
        return means

    def _tally(self, term, value):
        total, count = self.term_sums.get(term, (0.0, 0))
        self.term_sums[term] = (total + value.detach(), count + 1)

    def prepare(self, semantics, train_feat=None):
        """Neighbour tables from ``Semantics``: items' nearest items; each unit's nearest other
        units and the sequence to encode when it is retrieved. Users: those with training history,
        their last ``max_seq_length`` training items. Prefixes: the rows of ``train_feat`` (the
        training set's interactions, which gain a PREFIX_ID field)."""
        self.semantic_source = semantics.source
        device = self.item_embedding.weight.device
        k = min(self.substitute_k, self.n_items - 2)
        items = nearest_neighbours(semantics.item_vectors[1:], k, self.exact_neighbours) + 1
        self.item_neighbours = torch.cat(
            [torch.zeros(1, items.shape[1], dtype=torch.long), torch.from_numpy(items)]
        ).to(device)
        if self.cross_retrieval == "user":
            units, seqs, lengths, vectors = self._user_units(semantics)
        else:
            if train_feat is None:
                raise ValueError("cross_retrieval: prefix needs the training interactions (train_feat).")
            units, seqs, lengths, vectors = self._prefix_units(semantics, train_feat)
        if len(units) <= self.user_k:
            raise ConfigError(
                f"user_k {self.user_k} needs more than {len(units)} {self.cross_retrieval}s with training history."
            )
        found = nearest_neighbours(vectors[units.numpy()], self.user_k, self.exact_neighbours)
        neighbours = torch.zeros(len(vectors), self.user_k, dtype=torch.long)
        neighbours[units] = units[torch.from_numpy(found)]
        self.unit_neighbours, self.unit_seq, self.unit_seq_len = (
            neighbours.to(device),
            seqs.to(device),
            lengths.to(device),
        )
        self.unit_semantic = torch.from_numpy(vectors).to(device)
        if self.synthesis is None:
            self.synthesis = PositiveSynthesis(
                vectors.shape[1], self.item_embedding.weight.shape[1], self.synthesis_dropout
            ).to(device)

    def _user_units(self, semantics):
        units = torch.tensor(sorted(semantics.histories))
        seqs = torch.zeros(self.n_users, self.max_seq_length, dtype=torch.long)
        lengths = torch.ones(self.n_users, dtype=torch.long)
        for user, history in semantics.histories.items():
            history = history[-self.max_seq_length :]
            seqs[user, : len(history)] = torch.tensor(history)
            lengths[user] = len(history)
        return units, seqs, lengths, semantics.user_vectors

    def _prefix_units(self, semantics, train_feat):
        seqs, lengths = train_feat[self.ITEM_SEQ], train_feat[self.ITEM_SEQ_LEN]
        train_feat.update(Interaction({PREFIX_ID: torch.arange(len(seqs))}))
        if semantics.prefix_vectors is not None:  # prefix_semantics: text, one embedded text per prefix
            vectors = torch.from_numpy(semantics.prefix_vectors)
        else:
            items = torch.from_numpy(semantics.item_vectors)
            vectors = torch.cat([items[chunk].sum(1) for chunk in seqs.split(4096)])  # padding's row is zero
        return torch.arange(len(seqs)), seqs, lengths, F.normalize(vectors, dim=-1).numpy()

    @torch.no_grad()
    def refresh_memory(self, batch_size=1024):
        """``cross_view: memory``: every unit's representation under the current encoder, once per
        epoch, used (detached) as the retrieved units' representations."""
        was_training = self.training
        self.eval()
        self.unit_memory = torch.cat(
            [
                self.forward(self.unit_seq[start : start + batch_size], self.unit_seq_len[start : start + batch_size])
                for start in range(0, len(self.unit_seq), batch_size)
            ]
        )
        self.train(was_training)

    def substitute(self, item_seq):
        """Each real item replaced, with probability substitute_rate, by a random one of its
        semantically nearest items (padding stays padding)."""
        replace = (torch.rand(item_seq.shape, device=item_seq.device) < self.substitute_rate) & (item_seq > 0)
        choice = torch.randint(self.item_neighbours.shape[1], item_seq.shape, device=item_seq.device)
        return torch.where(replace, self.item_neighbours[item_seq, choice], item_seq)

    def retrieved_units(self, units):
        """(batch,) unit ids (users or prefixes) -> (batch, user_k) ids of their semantically
        nearest other units."""
        if not len(self.unit_neighbours):
            raise RuntimeError("SRACL.prepare() must run before training (SRACLTrainer does it).")
        return self.unit_neighbours[units]

    def calculate_loss(self, interaction):
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        batch, width = item_seq.shape
        seqs, lens = [item_seq], [item_seq_len]
        if self.intra_weight:
            seqs += [self.substitute(item_seq), self.substitute(item_seq)]
            lens += [item_seq_len, item_seq_len]
        if self.cross_weight:
            units = interaction[self.unit_field]
            neighbours = self.retrieved_units(units)
            if self.separate_anchor:  # the authors' code encodes the anchor again for this term
                seqs.append(item_seq)
                lens.append(item_seq_len)
            if self.cross_view == "encode":
                seqs.append(self.unit_seq[neighbours.flatten(), :width])
                lens.append(self.unit_seq_len[neighbours.flatten()].clamp(max=width))
        # one stacked encoder pass (independent dropout per row); sizes: batch each, then batch * user_k
        outputs = self.forward(torch.cat(seqs), torch.cat(lens))
        anchor = outputs[:batch]
        loss = F.cross_entropy(anchor @ self.item_embedding.weight.T, interaction[self.POS_ITEM_ID])
        self._tally("ce", loss)
        if self.intra_weight:
            views = outputs[batch : 2 * batch], outputs[2 * batch : 3 * batch]
            intra = info_nce(*views, self.tau, self.similarity)
            self._tally("intra", intra)
            loss = loss + self.intra_weight * intra
        if self.cross_weight:
            if self.cross_view == "encode":
                retrieved = outputs[-batch * self.user_k :].view(batch, self.user_k, -1)
            else:
                retrieved = self.unit_memory[neighbours]
            if self.separate_anchor:
                start = (3 if self.intra_weight else 1) * batch
                anchor = outputs[start : start + batch]
            positive = self.synthesis(self.unit_semantic[units], self.unit_semantic[neighbours], retrieved)
            contrast = info_nce if self.cross_view == "encode" else anchored_info_nce
            cross = contrast(anchor, positive, self.tau, self.similarity)
            self._tally("cross", cross)
            loss = loss + self.cross_weight * cross
        return loss
