"""The Scaffold API: a policy over the search tree. The engine does everything else.

A scaffold looks at the finished nodes (and the actions still under way) and says what to do
next: draft a candidate from the task's starting code, improve a node, or debug a node whose
run failed. The engine codes, runs, parses, records, resumes and parallelises those actions.

    class MyScaffold(Scaffold):
        name = "mine"
        Params = MyParams                    # a ScaffoldParams subclass: the CLI's --scaffold-arg

        def step(self, state: SearchState) -> list[Action]:
            best = state.best()
            return [Action.improve(best)] if best else [Action.draft()]

A scaffold does not call an LLM or an executor itself unless it wants to: `state.context`
lends it the evaluation's model (`complete`), budgeted and recorded like the coder's calls.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import ConfigError
from harness.manifests.tracks import Task
from harness.models.base import Message
from harness.search.journal import ActionKind, Node


@dataclass(frozen=True)
class Action:
    """What to do next. `parent` is None for a draft, the node to improve or debug otherwise.

    `note` is passed to the coder verbatim, under "Direction for this attempt" in its prompt:
    the place for an idea a scaffold chose (e.g. from its own LLM call)."""

    kind: ActionKind
    parent: int | None = None
    note: str = ""

    @staticmethod
    def draft(note: str = "") -> Action:
        return Action("draft", None, note)

    @staticmethod
    def improve(node: Node | int, note: str = "") -> Action:
        return Action("improve", node if isinstance(node, int) else node.id, note)

    @staticmethod
    def debug(node: Node | int, note: str = "") -> Action:
        return Action("debug", node if isinstance(node, int) else node.id, note)


class ScaffoldContext:
    """What the engine lends a scaffold besides the tree: the task, any node's code, and the model.

    Calls through `complete` use the evaluation's model and provider layer, so they count
    against `--max-cost`/`--max-tokens` (raising `BudgetExceeded`, which stops the search
    cleanly), add to the run's usage, and are saved to `scaffold/transcript.jsonl` under
    `purpose`. A failed call raises `harness.models.ModelError`. This base class is what a
    `SearchState` built outside the engine (a unit test) has: no task, no model, no files."""

    task: Task | None = None

    def complete(self, messages: Sequence[Message], purpose: str = "scaffold") -> str:
        """Ask the model; returns its answer's text."""
        raise ConfigError("this search state has no model (it was not built by the engine)")

    def files(self, node_id: int | None) -> dict[str, str]:
        """The files of a node's workspace; `None` gives the task's starting files. A node that
        never ran (`failed`) has none."""
        raise ConfigError("this search state has no files (it was not built by the engine)")


@dataclass
class SearchState:
    """What a scaffold sees when asked for its next step.

    `nodes` are the finished nodes in id order; `pending` the actions started but not finished
    (being coded, waiting for a run slot, running). `budget_left` counts nodes that may still
    be started. `rng` is seeded from the evaluation's seed and the journal, so a resumed search
    draws the same numbers: use it, not the `random` module, for a reproducible policy."""

    nodes: Sequence[Node]
    pending: Sequence[Action]
    budget_left: int
    rng: random.Random = field(default_factory=random.Random)
    context: ScaffoldContext = field(default_factory=ScaffoldContext)

    def node(self, node_id: int) -> Node:
        return next(n for n in self.nodes if n.id == node_id)

    def best(self) -> Node | None:
        """The fastest valid node (ties: the earliest)."""
        valid = [n for n in self.nodes if n.valid and n.time_ms is not None]
        return min(valid, key=lambda n: (n.time_ms or 0.0, n.id)) if valid else None

    def count(self, kind: ActionKind) -> int:
        """Nodes made by `kind` actions, finished or pending."""
        return sum(n.action == kind for n in self.nodes) + sum(a.kind == kind for a in self.pending)

    def children(self, node_id: int) -> list[Node]:
        """The finished children of a node (pending ones are in `pending`)."""
        return [n for n in self.nodes if n.parent == node_id]

    def is_leaf(self, node_id: int) -> bool:
        """No child, finished or pending."""
        return not self.children(node_id) and all(a.parent != node_id for a in self.pending)


class ScaffoldParams(BaseModel):
    """Parameters every scaffold has. Subclasses add their own fields, each one settable from
    the CLI (`--scaffold-arg name=value`) and shown by `speedrun scaffolds list`."""

    model_config = ConfigDict(extra="forbid")

    nodes: int = Field(20, ge=1, description="node budget: candidates written and run")


class Scaffold(ABC):
    """Subclass this, set `name` (and `Params`, `description`), and implement `step`."""

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
        """How many nodes the search may create in all."""
        return self.params.nodes

    @abstractmethod
    def step(self, state: SearchState) -> list[Action]:
        """The next batch of actions, decided together (e.g. three children of the best node).

        The engine starts all of them (cut to `state.budget_left`). With `--schedule paper`
        it waits until the whole batch has finished before asking again; with `async` it asks
        again whenever a run slot is about to free, with the unfinished actions in
        `state.pending`. Return [] to wait for pending actions; [] while nothing is pending
        ends the search early."""

    def describe(self) -> dict[str, Any]:
        """The scaffold and its parameters, as recorded in run.json."""
        return {"scaffold": self.name, **self.params.model_dump()}
