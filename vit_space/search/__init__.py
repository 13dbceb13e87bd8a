"""Training-free architecture search: budgets on parameters and MACs (`budget`) and the searchers
(`searchers`) that rank candidates with a proxy."""

from vit_space.search.budget import Budget, sample_within
from vit_space.search.searchers import SearchConfig, Searcher, SearchState, search

__all__ = ["Budget", "SearchConfig", "SearchState", "Searcher", "sample_within", "search"]
