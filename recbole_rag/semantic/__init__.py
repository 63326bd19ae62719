"""Semantic vectors for SRA-CL: item and user texts (texts.py) -> optional LLM rewriting (llm.py)
-> sentence embeddings, cached (embed.py); or categorical / user-supplied vectors (build.py)."""

from recbole_rag.semantic.build import SOURCES, Semantics, build_semantics
from recbole_rag.semantic.neighbours import nearest_neighbours

__all__ = ["SOURCES", "Semantics", "build_semantics", "nearest_neighbours"]
