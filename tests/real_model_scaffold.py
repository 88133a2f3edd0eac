"""The search the real-model test runs: three drafts side by side (the flat preset's first
round), then one debug step from a node that ran, the one that failed first if any did."""

from __future__ import annotations

from harness.search.api import Action, Scaffold, SearchState


class DraftsThenDebug(Scaffold):
    name = "drafts-then-debug"
    description = "three drafts, then debug the first node that ran (buggy first)"

    def step(self, state: SearchState) -> list[Action]:
        if state.count("draft") < 3:
            return [Action("draft") for _ in range(3 - state.count("draft"))]
        if state.pending or state.count("debug"):
            return []
        ran = [n for n in state.nodes if n.status in ("buggy", "invalid", "valid")]
        ran.sort(key=lambda n: (n.status != "buggy", n.status != "invalid", n.id))
        return [Action("debug", ran[0].id)] if ran else []
