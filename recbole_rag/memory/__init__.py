"""Memory banks of <user-sequence vector, next item> pairs for retrieval-augmented models."""

from recbole_rag.memory.bank import MemoryBank

__all__ = ["MemoryBank"]
