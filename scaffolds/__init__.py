"""Search scaffolds: policies over the search tree (flat, tree, forest, aide, multi-aide, yours).

The API is `Scaffold` (subclass it and implement `step`), `ScaffoldParams` (its parameters),
`SearchState` (what `step` sees), `Action` (what it returns), `ScaffoldContext` (the model and
files the engine lends it) and `register` / `load_scaffold_class` / `get_scaffold`.
"""

from harness.models.base import Message
from scaffolds.base import Action, Scaffold, ScaffoldContext, ScaffoldParams, SearchState
from scaffolds.registry import (
    ENTRY_POINT_GROUP,
    broken_plugins,
    get_scaffold,
    load_scaffold_class,
    register,
    scaffold_classes,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Action",
    "Message",
    "Scaffold",
    "ScaffoldContext",
    "ScaffoldParams",
    "SearchState",
    "broken_plugins",
    "get_scaffold",
    "load_scaffold_class",
    "register",
    "scaffold_classes",
]
