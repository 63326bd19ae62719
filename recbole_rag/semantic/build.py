"""One interface for SRA-CL's semantic vectors of items and users, whatever their source.

``semantic_source``:
  text         the .item file's text fields -> item descriptions and user summaries (llm.py) ->
               sentence embeddings (embed.py, cached);
  categorical  multi-hot vectors of the .item file's token / token_seq attributes;
  file         item vectors computed elsewhere (e.g. LLM embeddings), ``semantic_embedding_file``:
               ``.npz`` with ``item_id`` (n,) str and ``embedding`` (n, dim), or ``.npy`` (rows, dim)
               whose row r is the item with id r;
  auto         file if ``semantic_embedding_file`` is set, else text.
For categorical and file sources (and ``user_semantics: items``) a user's vector is the mean of its
training items' vectors.
"""

import os
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from recbole_rag.errors import ConfigError, DatasetError
from recbole_rag.semantic import texts as T
from recbole_rag.semantic.embed import embed_texts
from recbole_rag.semantic.llm import text_writer

SOURCES = ("auto", "text", "categorical", "file")
# A user's vector for the text source: its own text embedded, or the mean of its items' vectors
# (no user texts to embed: far fewer tokens).
USER_SEMANTICS = ("text", "items")


@dataclass
class Semantics:
    source: str  # what the vectors came from, e.g. "text: movie_title, release_year, class"
    item_vectors: np.ndarray  # (n_items, dim), row 0 (padding) zero
    user_vectors: np.ndarray  # (n_users, dim), zero for users without training history
    histories: dict  # {internal user id: training item ids in time order}
    embedded: int = 0  # texts embedded in this call (0 when the cache held them all)
    prefix_vectors: np.ndarray = None  # (training rows, dim) with prefix texts, else None


def _shown_path(path):
    """``path`` relative to the working directory when it lies under it: reports carry no home folders."""
    relative = os.path.relpath(os.path.abspath(path))
    return path if relative.startswith("..") else relative


def normalise(vectors):
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def default_cache_path(config):
    pooling = f"-{config['semantic_pooling']}" if config["semantic_pooling"] else ""
    model = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(config["semantic_model"]) + pooling)
    return os.path.join(config["checkpoint_dir"], "semantic", f"{config['dataset']}-{model}.npz")


def vectors_from_file(path, tokens):
    """Item vectors in internal-id order from a user-supplied .npz / .npy file."""
    if not path or not os.path.isfile(path):
        raise ConfigError(f"semantic_embedding_file '{path}' does not exist.")
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as data:
            if "item_id" not in data or "embedding" not in data:
                raise DatasetError(f"'{path}' must hold arrays item_id and embedding, it has {', '.join(data.files)}.")
            rows = {str(t): v for t, v in zip(data["item_id"].tolist(), data["embedding"])}
    elif path.endswith(".npy"):
        matrix = np.load(path, allow_pickle=False)
        rows = {str(r): v for r, v in enumerate(matrix)}
    else:
        raise ConfigError(f"semantic_embedding_file must end in .npz or .npy, got '{path}'.")
    missing = [t for t in tokens[1:] if t not in rows]
    if missing:
        raise DatasetError(f"'{path}' has no vector for {len(missing)} items, e.g. {', '.join(missing[:5])}.")
    dim = len(next(iter(rows.values())))
    return normalise(np.stack([np.zeros(dim, np.float32)] + [np.asarray(rows[t], np.float32) for t in tokens[1:]]))


def categorical_vectors(rows, tokens, fields, max_values):
    """Multi-hot of the most frequent ``field=value`` labels."""

    def item_labels(token):
        row = rows.get(token, {})
        return {f"{f}={v}" for f in fields for v in T.labels(row.get(f, ""))}

    per_item = [item_labels(t) for t in tokens[1:]]
    counts = Counter(label for labels in per_item for label in labels)
    vocab = {label: j for j, (label, _) in enumerate(counts.most_common(max_values))}
    vectors = np.zeros((len(tokens), max(len(vocab), 1)), np.float32)
    for i, labels in enumerate(per_item, start=1):
        vectors[i, [vocab[label] for label in labels if label in vocab]] = 1.0
    return normalise(vectors)


def mean_user_vectors(item_vectors, histories, n_users):
    users = np.zeros((n_users, item_vectors.shape[1]), np.float32)
    for user, items in histories.items():
        users[user] = item_vectors[items].mean(0)
    return normalise(users)


def build_semantics(config, train_dataset, show_progress=False, user_texts=True, prefix_texts=False):
    """Semantic vectors of every item and user of ``train_dataset`` (RecBole internal ids).
    ``user_texts=False``: users get their items' mean even under ``user_semantics: text``, for a
    caller that never reads user vectors (SRA-CL's prefix retrieval), so no user text is embedded.
    ``prefix_texts=True``: every training row's prefix gets a text of its own too (the authors' unit
    of retrieval), embedded into ``Semantics.prefix_vectors``."""
    source = config["semantic_source"] or "auto"
    if source not in SOURCES:
        raise ConfigError(f"semantic_source must be one of {', '.join(SOURCES)}, got {source!r}.")
    item_field = config["ITEM_ID_FIELD"]
    tokens = [str(t) for t in train_dataset.field2id_token[item_field]]
    n_users = train_dataset.user_num
    histories = T.user_histories(
        train_dataset,
        config["USER_ID_FIELD"],
        item_field,
        item_field + config["LIST_SUFFIX"],
        config["ITEM_LIST_LENGTH_FIELD"],
    )
    file = config["semantic_embedding_file"]
    item_history_count = config["item_text_histories"] or 0
    if prefix_texts or item_history_count:
        if source not in ("auto", "text") or (source == "auto" and file):
            raise ConfigError(
                "prefix_semantics: text and item_text_histories build texts: they need semantic_source: text "
                f"(got {source}{' with semantic_embedding_file' if file else ''})."
            )
    if source == "file" or (source == "auto" and file):
        items = vectors_from_file(file, tokens)
        return Semantics(f"file: {file}", items, mean_user_vectors(items, histories, n_users), histories)
    path = T.item_file_path(config)
    fields, rows = T.read_item_file(path)
    if source == "categorical":
        chosen = T.categorical_fields(fields, path)
        items = categorical_vectors(rows, tokens, chosen, config["semantic_categorical_dim"])
        return Semantics(
            f"categorical: {', '.join(chosen)}", items, mean_user_vectors(items, histories, n_users), histories
        )
    text_fields = T.choose_text_fields(fields, config["semantic_text_fields"], path)
    item_texts, missing = T.item_texts(rows, tokens, text_fields)
    if missing:
        raise DatasetError(f"'{path}' has no row for {missing} of the {len(tokens) - 1} items in the interactions.")
    if config["user_semantics"] not in USER_SEMANTICS:
        raise ConfigError(
            f"user_semantics must be one of {', '.join(USER_SEMANTICS)}, got {config['user_semantics']!r}."
        )
    feat = train_dataset.inter_feat
    seq_field, len_field = item_field + config["LIST_SUFFIX"], config["ITEM_LIST_LENGTH_FIELD"]
    if item_history_count:
        bought = T.purchase_histories(feat, item_field, seq_field, len_field, item_history_count)
        item_texts = T.with_histories(item_texts, bought, rows, tokens, text_fields[0])
    users = sorted(histories)
    writer = text_writer(config["llm"])
    texts = writer.describe_items(item_texts[1:])
    user_mode = config["user_semantics"] if user_texts else "items"
    if user_mode == "text":
        label_fields = T.label_fields(fields, text_fields)
        texts += writer.summarize_users(
            [
                T.user_text(histories[u], rows, tokens, text_fields, label_fields, config["user_text_items"])
                for u in users
            ]
        )
    n_user_texts = len(texts) - (len(tokens) - 1)
    if prefix_texts:
        lengths = feat[len_field].tolist()
        prefixes = [
            T.prefix_text(seq[:n].tolist(), rows, tokens, text_fields[0]) for seq, n in zip(feat[seq_field], lengths)
        ]
        texts += writer.summarize_users(prefixes)
    cache = config["semantic_cache"] or default_cache_path(config)
    vectors, embedded = embed_texts(
        texts,
        cache,
        config["semantic_model"],
        config["semantic_batch_size"],
        show_progress,
        pooling=config["semantic_pooling"],
    )
    n_items = len(tokens) - 1
    item_vectors = np.zeros((len(tokens), vectors.shape[1]), np.float32)
    item_vectors[1:] = vectors[:n_items]
    if user_mode == "text":
        user_vectors = np.zeros((n_users, vectors.shape[1]), np.float32)
        user_vectors[users] = vectors[n_items : n_items + n_user_texts]
    else:
        user_vectors = mean_user_vectors(item_vectors, histories, n_users)
    prefix_vectors = vectors[n_items + n_user_texts :] if prefix_texts else None
    source = (
        f"text ({writer.name}): {', '.join(text_fields)}"
        + (f" + {item_history_count} purchase histories" if item_history_count else "")
        + f"; users: {user_mode}"
        + ("; prefixes: text" if prefix_texts else "")
        + f"; cache {_shown_path(cache)}"
    )
    return Semantics(source, item_vectors, user_vectors, histories, embedded, prefix_vectors)
