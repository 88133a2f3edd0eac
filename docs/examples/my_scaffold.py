"""Two example scaffolds for `speedrun eval --scaffold ./docs/examples/my_scaffold.py:EpsilonGreedy`.

`EpsilonGreedy` is a policy over the tree and nothing else. `IdeaFirst` shows the escape hatch:
it asks the model for an idea before each attempt and hands the idea to the coder.
"""

from __future__ import annotations

from pydantic import Field

from harness.search import Action, Message, Scaffold, ScaffoldParams, SearchState


class EpsilonParams(ScaffoldParams):
    drafts: int = Field(2, ge=1, description="independent drafts before improving")
    epsilon: float = Field(0.2, ge=0.0, le=1.0, description="probability of improving a random valid node")


class EpsilonGreedy(Scaffold):
    """Improve the fastest valid node, or with probability epsilon a random valid one."""

    name = "epsilon-greedy"
    description = "Drafts, then improve the fastest valid node (a random one with probability epsilon)."
    Params = EpsilonParams
    params: EpsilonParams  # narrows the type for the checker: self.params is an EpsilonParams

    def step(self, state: SearchState) -> list[Action]:
        p = self.params
        if state.count("draft") < p.drafts:
            return [Action.draft()]
        valid = [n for n in state.nodes if n.valid]
        if not valid:
            # Nothing reached the target yet: wait for the drafts under way, else draft again.
            return [] if state.pending else [Action.draft()]
        # state.rng, not the random module: a resumed search then makes the same choices.
        if state.rng.random() < p.epsilon:
            return [Action.improve(state.rng.choice(valid))]
        best = state.best()
        assert best is not None
        return [Action.improve(best)]


class IdeaFirst(EpsilonGreedy):
    """Epsilon-greedy, but each attempt starts with the model proposing one idea."""

    name = "idea-first"
    description = "Epsilon-greedy; before each attempt the model proposes one idea, passed to the coder."

    def step(self, state: SearchState) -> list[Action]:
        actions = super().step(state)
        if not actions or state.context.task is None:
            return actions
        code = state.context.files(actions[0].parent)["train.py"]
        question = (
            f"Task: {state.context.task.title}. Here is a training script:\n\n{code}\n\n"
            "Propose, in one sentence, the single change most likely to reach the target loss sooner."
        )
        # Counted against --max-cost/--max-tokens and saved to scaffold/transcript.jsonl.
        idea = state.context.complete([Message(role="user", content=question)], purpose="ideation")
        return [Action(a.kind, a.parent, note=f"Idea to try: {idea}") for a in actions]
