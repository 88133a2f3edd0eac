"""The search: the scaffold plug-in API, the engine that acts on it, and the journal it keeps.

A scaffold subclasses `Scaffold` and implements `step(SearchState) -> list[Action]`; it is
found by name through `register`, a `module:Class` spec, or the `speedrun.scaffolds` entry
point (the built-in presets in `scaffolds/` are registered that way too).
"""

from harness.models.base import Message
from harness.search.api import Action, Scaffold, ScaffoldContext, ScaffoldParams, SearchState
from harness.search.registry import (
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
