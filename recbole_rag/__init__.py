"""recbole-rag: retrieval-augmented and regenerated-data sequential recommendation for RecBole."""

from recbole_rag import compat  # noqa: F401  (must run before RecBole's Config is used)
from recbole_rag.config import Config
from recbole_rag.inference import load_data_and_model, recommend
from recbole_rag.quick_start import compare, run_recbole_rag
from recbole_rag.registry import get_model, get_trainer, known_models

__all__ = [
    "Config",
    "compare",
    "run_recbole_rag",
    "load_data_and_model",
    "recommend",
    "get_model",
    "get_trainer",
    "known_models",
]
__version__ = "0.1.0"
