"""Dataset regeneration (DR4SR, arXiv 2405.17795): item-transition pattern mining, hybrid
inference of the regenerator, and the regenerated dataset as reusable RecBole atomic files."""

from recbole_rag.regeneration.patterns import Patterns, mine_patterns, training_sequences

__all__ = ["Patterns", "mine_patterns", "training_sequences"]
