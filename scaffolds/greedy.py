"""The paper's scaffolds as one greedy tree search with four knobs (AIDE's policy, generalised).

Each step is one decision:

1. While there are fewer than `initial_drafts` drafts, draft the missing ones (one batch).
2. Otherwise, with probability `debug_prob`, debug a random buggy leaf whose chain of
   consecutive debug steps is shorter than `max_debug_depth` (one child).
3. Otherwise improve the best valid node (the fastest), `branching` children at once.

Without a valid node, step 3 improves the run that came closest to the target loss; with
nothing run yet it waits for pending nodes, or drafts afresh when none are pending.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import Field, create_model

from harness.search.api import Action, Scaffold, ScaffoldParams, SearchState
from harness.search.journal import Node
from harness.search.registry import register


class GreedyParams(ScaffoldParams):
    initial_drafts: int | None = Field(
        3, ge=1, description="drafts from the starting code before improving (None: every node is a draft)"
    )
    branching: int = Field(1, ge=1, description="children created each time a node is improved")
    debug_prob: float = Field(0.0, ge=0.0, le=1.0, description="probability of debugging a buggy leaf")
    max_debug_depth: int = Field(5, ge=0, description="longest chain of consecutive debug steps")


@register
class GreedySearch(Scaffold):
    name = "greedy"
    description = "Draft, then debug (with probability debug_prob) or improve the fastest valid node."
    Params = GreedyParams
    params: GreedyParams

    def step(self, state: SearchState) -> list[Action]:
        p = self.params
        drafts = p.nodes if p.initial_drafts is None else p.initial_drafts
        missing = min(drafts - state.count("draft"), state.budget_left)
        if missing > 0:
            return [Action.draft() for _ in range(missing)]
        buggy = [n for n in state.nodes if self.debuggable(n, state)]
        # The draw happens only when there is something to debug, as in the paper's runner.
        if buggy and p.debug_prob > 0 and state.rng.random() < p.debug_prob:
            return [Action.debug(state.rng.choice(buggy))]
        target = state.best() or closest(state)
        if target is None:
            return [] if state.pending else [Action.draft()]
        return [Action.improve(target) for _ in range(p.branching)]

    def debuggable(self, node: Node, state: SearchState) -> bool:
        """A buggy leaf whose child would not exceed `max_debug_depth` debug steps in a row."""
        return node.status == "buggy" and node.debug_depth < self.params.max_debug_depth and state.is_leaf(node.id)


def closest(state: SearchState) -> Node | None:
    """The run that ended normally nearest to the target loss (ties: the earliest)."""
    ran = [
        (n.result.val_loss, n.id, n)
        for n in state.nodes
        if n.status == "invalid" and n.result is not None and n.result.val_loss is not None
    ]
    return min(ran, key=lambda t: (t[0], t[1]))[2] if ran else None


def _preset(preset: str, doc: str, **defaults: Any) -> type[GreedySearch]:
    """A registered subclass of GreedySearch whose parameters default to the preset's values."""
    fields: dict[str, Any] = {}
    for key, value in defaults.items():
        info = copy.copy(GreedyParams.model_fields[key])
        info.default = value
        fields[key] = (GreedyParams.model_fields[key].annotation, info)
    camel = preset.title().replace("-", "")
    params = create_model(f"{camel}Params", __base__=GreedyParams, **fields)
    cls = type(
        f"{camel}Scaffold",
        (GreedySearch,),
        {"name": preset, "description": doc, "Params": params, "__module__": __name__},
    )
    return register(cls)


# The paper's presets (its Table 2): each a 20-node budget, every parameter overridable.
Flat = _preset("flat", "Best-of-M: every node is an independent draft.", initial_drafts=None)
Tree = _preset("tree", "One draft, then improve the fastest node, 3 children at a time.", initial_drafts=1, branching=3)
Forest = _preset(
    "forest", "Three drafts, then improve the fastest node, 3 children at a time.", initial_drafts=3, branching=3
)
Aide = _preset(
    "aide",
    "AIDE: three drafts, then debug a buggy leaf (p=0.5) or improve the fastest node.",
    initial_drafts=3,
    branching=1,
    debug_prob=0.5,
    max_debug_depth=5,
)
MultiAide = _preset(
    "multi-aide",
    "AIDE with 3 children per improvement (a debug step makes one).",
    initial_drafts=3,
    branching=3,
    debug_prob=0.5,
    max_debug_depth=5,
)
