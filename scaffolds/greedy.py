"""The paper's scaffolds as one greedy tree search with four knobs (AIDE's policy, generalised).

Draft until there are `initial_drafts` roots; then, with probability `debug_prob`, debug a
random buggy leaf whose debug chain is shorter than `max_debug_depth`; otherwise improve the
best valid node (the fastest), `branching` children at a time.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import Field, create_model

from harness.journal import Node
from scaffolds.base import Action, Scaffold, ScaffoldParams, SearchState
from scaffolds.registry import register


class GreedyParams(ScaffoldParams):
    initial_drafts: int = Field(3, ge=1, description="drafts from the starting code before improving")
    branching: int = Field(1, ge=1, description="children created each time a node is improved")
    debug_prob: float = Field(0.0, ge=0.0, le=1.0, description="probability of debugging a buggy leaf")
    max_debug_depth: int = Field(5, ge=0, description="longest chain of consecutive debug steps")


class GreedySearch(Scaffold):
    name = "greedy"
    description = "Draft, then debug (with probability debug_prob) or improve the fastest valid node."
    Params = GreedyParams
    params: GreedyParams

    def next_actions(self, state: SearchState, slots: int) -> list[Action]:
        p = self.params
        room = min(slots, state.budget_left)
        actions: list[Action] = []
        drafts = state.count("draft")
        while len(actions) < room and drafts < p.initial_drafts:
            actions.append(Action.draft())
            drafts += 1
        while len(actions) < room:
            pending = [*state.pending, *actions]
            view = SearchState(state.nodes, pending, state.budget_left - len(actions), state.rng)
            step = self._select(view)
            if step is None:
                break
            actions.extend(step[: room - len(actions)])
        return actions

    def _select(self, state: SearchState) -> list[Action] | None:
        p = self.params
        buggy = [n for n in state.nodes if self._debuggable(n, state)]
        if buggy and p.debug_prob > 0 and state.rng.random() < p.debug_prob:
            return [Action.debug(state.rng.choice(buggy))]
        best = state.best() or self._fallback(state)
        if best is None:
            # Nothing has run successfully yet: wait for running nodes, else start afresh.
            return None if state.pending else [Action.draft()]
        return [Action.improve(best)] * p.branching

    def _debuggable(self, node: Node, state: SearchState) -> bool:
        return (
            node.status == "buggy"
            and node.debug_depth < self.params.max_debug_depth
            and state.is_leaf(node.id)
        )

    @staticmethod
    def _fallback(state: SearchState) -> Node | None:
        """Without a valid node, improve the one that got closest to the target."""
        ran = [n for n in state.nodes if n.status == "invalid" and n.result and n.result.val_loss is not None]
        return min(ran, key=lambda n: (n.result.val_loss if n.result else 0.0, n.id)) if ran else None


def _preset(preset: str, doc: str, **defaults: float) -> type[GreedySearch]:
    fields: dict[str, Any] = {}
    for key, value in defaults.items():
        info = copy.copy(GreedyParams.model_fields[key])
        info.default = value
        fields[key] = (GreedyParams.model_fields[key].annotation, info)
    params = create_model(f"{preset.title().replace('-', '')}Params", __base__=GreedyParams, **fields)
    cls = type(
        f"{preset.title().replace('-', '')}Scaffold",
        (GreedySearch,),
        {"name": preset, "description": doc, "Params": params, "__module__": __name__},
    )
    return register(cls)


register(GreedySearch)
Flat = _preset("flat", "Best-of-M: every node is an independent draft.", initial_drafts=20, branching=1)
Tree = _preset(
    "tree", "One draft, then improve the fastest node, 3 children at a time.", initial_drafts=1, branching=3
)
Forest = _preset(
    "forest",
    "Three drafts, then improve the fastest node, 3 children at a time.",
    initial_drafts=3,
    branching=3,
)
Aide = _preset(
    "aide",
    "AIDE: three drafts, then debug (p=0.5) or improve the fastest node.",
    initial_drafts=3,
    branching=1,
    debug_prob=0.5,
    max_debug_depth=5,
)
MultiAide = _preset(
    "multi-aide",
    "AIDE with 3 children per improvement.",
    initial_drafts=3,
    branching=3,
    debug_prob=0.5,
    max_debug_depth=5,
)
