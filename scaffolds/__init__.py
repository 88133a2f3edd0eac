"""Search scaffolds: policies over the search tree (flat, tree, forest, aide, multi-aide, yours)."""

from scaffolds.base import Action, Scaffold, ScaffoldParams, SearchState
from scaffolds.registry import get_scaffold, load_scaffold_class, register, scaffold_classes

__all__ = [
    "Action",
    "Scaffold",
    "ScaffoldParams",
    "SearchState",
    "get_scaffold",
    "load_scaffold_class",
    "register",
    "scaffold_classes",
]
