"""The Scaffold API: a policy over the search tree. The engine does everything else.

A scaffold looks at the finished nodes (and the actions still running) and says which
actions to start next: draft a candidate from the task's starting code, improve a node, or
debug a node whose run failed. It never calls an LLM or an executor itself.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import ConfigError
from harness.journal import ActionKind, Node


@dataclass(frozen=True)
class Action:
    """What to do next. `parent` is None for a draft, the node id to improve or debug otherwise."""

    kind: ActionKind
    parent: int | None = None

    @staticmethod
    def draft() -> Action:
        return Action("draft")

    @staticmethod
    def improve(node: Node | int) -> Action:
        return Action("improve", node if isinstance(node, int) else node.id)

    @staticmethod
    def debug(node: Node | int) -> Action:
        return Action("debug", node if isinstance(node, int) else node.id)


@dataclass
class SearchState:
    """What a scaffold sees. `pending` are actions started but not finished yet."""

    nodes: Sequence[Node]
    pending: Sequence[Action]
    budget_left: int
    rng: random.Random = field(default_factory=random.Random)

    def node(self, node_id: int) -> Node:
        return next(n for n in self.nodes if n.id == node_id)

    def best(self) -> Node | None:
        """The fastest valid node (ties: the earliest)."""
        valid = [n for n in self.nodes if n.valid and n.time_ms is not None]
        return min(valid, key=lambda n: (n.time_ms, n.id)) if valid else None

    def count(self, kind: ActionKind) -> int:
        return sum(n.action == kind for n in self.nodes) + sum(a.kind == kind for a in self.pending)

    def children(self, node_id: int) -> list[Node]:
        return [n for n in self.nodes if n.parent == node_id]

    def is_leaf(self, node_id: int) -> bool:
        return not self.children(node_id) and all(a.parent != node_id for a in self.pending)


class ScaffoldParams(BaseModel):
    """Parameters every scaffold has. Subclasses add their own fields (overridable from the CLI)."""

    model_config = ConfigDict(extra="forbid")

    nodes: int = Field(20, ge=1, description="node budget: candidates written and run")


class Scaffold(ABC):
    """Subclass this, set `name` and `Params`, and implement `next_actions`."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Params: ClassVar[type[ScaffoldParams]] = ScaffoldParams

    def __init__(self, **params: Any) -> None:
        try:
            self.params = self.Params(**params)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise ConfigError(
                f"scaffold {self.name!r}: parameter {loc!r}: {err['msg']}; "
                f"known parameters: {', '.join(self.Params.model_fields)}"
            ) from None

    @property
    def budget(self) -> int:
        return self.params.nodes

    @abstractmethod
    def next_actions(self, state: SearchState, slots: int) -> list[Action]:
        """Up to `slots` actions to start now (never more than `state.budget_left`).

        Return [] to wait for running nodes; [] while nothing is running ends the search."""

    def describe(self) -> dict[str, Any]:
        return {"scaffold": self.name, **self.params.model_dump()}
