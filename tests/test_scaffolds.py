"""Every preset driven by a scripted model on the toy track: the trees they build match their
parameters (roots, branching, debug depth, budget), and AIDE debugs exactly when its RNG says.

The scripted model answers in the real edit format, setting the toy script's RATE (how fast
it reaches the target) or MODE (crash); the fake executor "runs" a toy script by reading those
constants, so a 20-node search takes a fraction of a second and its outcome is known.
"""

from __future__ import annotations

import math
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.coder.transcript import read_exchanges
from harness.data.tracks import ensure_data, run_env
from harness.errors import ConfigError
from harness.events import EventSink, ignore
from harness.execution.base import ExecResult, Executor, LineCallback, RunSpec
from harness.manifests.tracks import get_task, load_track
from harness.models.base import CallContext, Completion, Message, Model, Usage
from harness.outcome import RunResult
from harness.search import Action, Scaffold, SearchState, get_scaffold
from harness.search.budget import Budget
from harness.search.engine import Engine, EngineConfig, Schedule, search_rng
from harness.search.journal import Journal, Node
from scaffolds.greedy import GreedySearch

PRESETS = ["flat", "tree", "forest", "aide", "multi-aide"]

# ---- a scripted model and a fake executor (test_engine.py uses them too) -----------------------

#: An outcome per node: "valid" (rate from the node id: later nodes are faster), "slow"
#: (valid, slower than the start), "miss" (runs, never reaches the target), "crash", "noedit"
#: (an answer whose edit does not apply: the node fails without running).
Outcome = str
Decide = Callable[[CallContext, list[Message]], Outcome]


def by_node(outcomes: dict[int, Outcome], default: Outcome = "valid") -> Decide:
    return lambda ctx, _messages: outcomes.get(ctx.node_id if ctx.node_id is not None else -1, default)


def rate_for(node_id: int) -> float:
    """A rate that reaches the target (loss 1.0 from 4.0) at step 60 - node_id: strictly faster
    with every node, so the best node is never a tie."""
    return round(math.log(4) / (59.5 - min(node_id, 50)), 6)


class ScriptedModel(Model):
    """Answers with SEARCH/REPLACE edits of the toy script's RATE and MODE lines, per `decide`."""

    provider = "scripted"

    def __init__(
        self,
        decide: Decide | None = None,
        *,
        delay_s: float = 0.0,
        tokens: int = 0,
        interrupt_at: int | None = None,
    ) -> None:
        super().__init__("scripted")
        self.decide = decide or by_node({})
        self.delay_s = delay_s
        self.tokens = tokens
        self.interrupt_at = interrupt_at
        self.calls: list[tuple[str, int | None, float, float]] = []
        self.prompts: dict[int, str] = {}
        self._lock = threading.Lock()

    def generate(self, messages: list[Message], context: CallContext) -> Completion:
        t0 = time.monotonic()
        purpose = str(getattr(context, "purpose", "code"))
        if self.interrupt_at is not None and context.node_id == self.interrupt_at and purpose == "code":
            self.interrupt_at = None  # once: the resumed run gets an answer
            raise KeyboardInterrupt
        if self.delay_s:
            time.sleep(self.delay_s)
        usage = Usage(calls=1, input_tokens=self.tokens, output_tokens=0)
        with self._lock:
            self.calls.append((purpose, context.node_id, t0, time.monotonic()))
            if purpose == "code" and context.node_id is not None:
                self.prompts[context.node_id] = messages[-1].content
        if purpose != "code":
            return Completion(text=f"{purpose} of node {context.node_id}: looks fine.", usage=usage)
        outcome = self.decide(context, messages)
        return Completion(text=edit_answer(context, outcome), usage=usage)


def edit_answer(context: CallContext, outcome: Outcome) -> str:
    code = context.current_code
    if outcome == "noedit":
        return "train.py\n<<<<<<< SEARCH\nthis line is not in the file\n=======\nx = 1\n>>>>>>> REPLACE\n"
    rate = {"slow": 0.01, "miss": 0.001}.get(outcome, rate_for(context.node_id or 0))
    mode = "crash" if outcome == "crash" else "ok"
    old_rate = re.search(r"^RATE = .*\n", code, re.M)
    old_mode = re.search(r"^MODE = .*\n", code, re.M)
    assert old_rate and old_mode
    return (
        f"Set the rate to {rate} ({outcome}).\n\n"
        f"train.py\n<<<<<<< SEARCH\n{old_rate.group(0)}=======\nRATE = {rate}\n>>>>>>> REPLACE\n\n"
        f'train.py\n<<<<<<< SEARCH\n{old_mode.group(0)}=======\nMODE = "{mode}"\n>>>>>>> REPLACE\n'
    )


class FakeExecutor(Executor):
    """Writes the log the toy script would print, from its constants, without starting Python.
    A run takes `seconds_per_train_ms * train_ms` of wall time (0: instant)."""

    name = "fake"
    sandboxed = False

    def __init__(self, seconds_per_train_ms: float = 0.0, flood_lines: int = 0) -> None:
        self.scale = seconds_per_train_ms
        self.flood_lines = flood_lines
        self.runs: list[tuple[str, float, float]] = []
        self._lock = threading.Lock()

    def run(self, spec: RunSpec, on_line: LineCallback | None = None) -> ExecResult:
        t0 = time.monotonic()
        code = (spec.workspace / "train.py").read_text()
        rate = float(_const(code, "RATE"))
        step_s = float(_const(code, "STEP_S"))
        mode = _const(code, "MODE").strip('"')
        target = float(spec.env.get("SPEEDRUN_TARGET_VAL_LOSS", "1.0"))
        lines: list[str] = []
        code_exit = 0
        train_ms = 0.0
        if mode == "crash":
            lines += [f"noise line {i}" for i in range(self.flood_lines)]
            lines += ["Traceback (most recent call last):", "RuntimeError: deliberate crash"]
            code_exit = 1
        else:
            for step in range(401):
                loss = 4.0 * math.exp(-rate * step)
                if step % 5 == 0 or step == 400 or loss <= target:
                    avg = train_ms / max(step, 1)
                    lines.append(
                        f"step:{step}/400 val_loss:{loss:.4f} train_time:{train_ms:.0f}ms step_avg:{avg:.2f}ms"
                    )
                    if loss <= target:
                        break
                train_ms += 1000 * step_s
        if self.scale:
            time.sleep(self.scale * max(train_ms, 50.0))
        spec.log_path.write_text("".join(line + "\n" for line in lines))
        with self._lock:
            self.runs.append((spec.label, t0, time.monotonic()))
        return ExecResult(
            exit_code=code_exit,
            # The fake machine's clock: a run lasts the training it reports, plus what it took here,
            # so the harness's clock check sees what it would of a real run.
            wall_s=train_ms / 1000 + time.monotonic() - t0,
            log_path=spec.log_path,
            executor=self.name,
            sandboxed=False,
        )


def _const(code: str, name: str) -> str:
    m = re.search(rf"^{name} = (.*)$", code, re.M)
    assert m, name
    return m.group(1).strip()


def make_engine(
    run_dir: Path,
    scaffold: Scaffold,
    model: Model,
    executor: Executor | None = None,
    *,
    max_parallel: int = 1,
    schedule: Schedule = "paper",
    seed: int = 0,
    budget: Budget | None = None,
    analyze: bool = False,
    on_event: EventSink = ignore,
) -> Engine:
    """An engine on the toy track's task toy-0 (needs SPEEDRUN_HOME pointing at the toy track)."""
    task = get_task("toy-0")
    track = load_track(task.track)
    data = ensure_data(track)
    return Engine(
        EngineConfig(
            task=task,
            main_file="train.py",
            start_files={"train.py": track.record(task.from_record).code()},
            command=[sys.executable, "train.py"],
            run_env=run_env(track, data, seed=seed, target_val_loss=task.target_val_loss),
            time_limit_s=30,
            target_description="Reach val_loss 1.0 faster.",
            hint_levels=["pseudocode"],
            data_dir=data.data_dir,
            max_parallel=max_parallel,
            schedule=schedule,
            seed=seed,
            budget=budget or Budget(),
            analyze=analyze,
        ),
        model=model,
        scaffold=scaffold,
        executor=executor or FakeExecutor(),
        run_dir=run_dir,
        on_event=on_event,
    )


def search(
    tmp_path: Path,
    preset: str,
    decide: Decide | None = None,
    *,
    max_parallel: int = 1,
    schedule: Schedule = "paper",
    seed: int = 0,
    **params: Any,
) -> list[Node]:
    engine = make_engine(
        tmp_path / f"{preset}-{seed}",
        get_scaffold(preset, params),
        ScriptedModel(decide),
        max_parallel=max_parallel,
        schedule=schedule,
        seed=seed,
    )
    assert engine.run() == "finished"
    return engine.journal.all()


def improve_children(nodes: list[Node]) -> Counter[int]:
    return Counter(n.parent for n in nodes if n.action == "improve" and n.parent is not None)


# ---- the trees ------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("max_parallel", [1, 3])
def test_every_preset_spends_its_budget_and_builds_its_tree(
    toy_home: Path, tmp_path: Path, preset: str, max_parallel: int
) -> None:
    nodes = search(tmp_path, preset, max_parallel=max_parallel)
    scaffold = get_scaffold(preset)
    assert isinstance(scaffold, GreedySearch)
    p = scaffold.params
    assert [n.id for n in nodes] == list(range(20)), "20 nodes by default, ids in order"
    assert all(n.valid for n in nodes)
    roots = [n for n in nodes if n.parent is None]
    assert len(roots) == (20 if p.initial_drafts is None else p.initial_drafts)
    assert all(n.action == "draft" for n in roots)
    # Every improved node got whole batches of `branching` children, except the batch the
    # node budget cut short (the last one started).
    last = max(n.id for n in nodes)
    cut = nodes[last].parent
    for parent, count in improve_children(nodes).items():
        assert count % p.branching == 0 or parent == cut, (parent, count)
    assert all(n.depth == (0 if n.parent is None else nodes[n.parent].depth + 1) for n in nodes)


def test_tree_is_a_chain_of_best_nodes(toy_home: Path, tmp_path: Path) -> None:
    # Later nodes are faster (rate grows with the id), so each batch's best child is improved next.
    nodes = search(tmp_path, "tree")
    assert [n.parent for n in nodes] == [None, 0, 0, 0, 3, 3, 3, 6, 6, 6, 9, 9, 9, 12, 12, 12, 15, 15, 15, 18]


def test_flat_drafts_even_past_twenty_nodes(toy_home: Path, tmp_path: Path) -> None:
    nodes = search(tmp_path, "flat", nodes=25, max_parallel=4)
    assert len(nodes) == 25 and all(n.action == "draft" for n in nodes)


def test_forest_waits_for_a_valid_draft_and_improves_the_fastest(toy_home: Path, tmp_path: Path) -> None:
    # Draft 1 is the fastest of the three; draft 2 crashes and, with debug_prob 0, is never debugged.
    decide = by_node({0: "slow", 2: "crash"})
    nodes = search(tmp_path, "forest", decide, nodes=6)
    assert [n.status for n in nodes[:3]] == ["valid", "valid", "buggy"]
    assert [(n.action, n.parent) for n in nodes[3:]] == [("improve", 1)] * 3


def test_without_a_valid_node_the_closest_run_is_improved(toy_home: Path, tmp_path: Path) -> None:
    nodes = search(tmp_path, "tree", by_node({0: "miss"}), nodes=4)
    assert nodes[0].status == "invalid"
    assert [(n.action, n.parent) for n in nodes[1:]] == [("improve", 0)] * 3


def test_with_nothing_that_ran_the_search_drafts_again(toy_home: Path, tmp_path: Path) -> None:
    nodes = search(tmp_path, "tree", by_node({0: "crash", 1: "noedit"}), nodes=3)
    assert [(n.action, n.status) for n in nodes] == [("draft", "buggy"), ("draft", "failed"), ("draft", "valid")]


@pytest.mark.parametrize("preset", ["aide", "multi-aide"])
def test_aide_debug_chains_stay_within_max_depth(toy_home: Path, tmp_path: Path, preset: str) -> None:
    # Every debug attempt crashes again, so chains grow until max_debug_depth stops them.
    def decide(ctx: CallContext, messages: list[Message]) -> Outcome:
        if "## This script failed" in messages[-1].content:
            return "crash"
        return "crash" if (ctx.node_id or 0) % 3 == 1 else "valid"

    nodes = search(tmp_path, preset, decide, nodes=40, max_debug_depth=2)
    debugs = [n for n in nodes if n.action == "debug"]
    assert debugs, "some buggy leaves were debugged"
    assert max(n.debug_depth for n in nodes) == 2
    for n in debugs:
        parent = nodes[n.parent or 0]
        assert parent.status == "buggy" and n.debug_depth == parent.debug_depth + 1
    # A debug step makes one child, even when improvements make three.
    assert all(sum(1 for c in nodes if c.parent == n.parent and c.action == "debug") == 1 for n in debugs)


def test_aide_picks_debug_or_improve_as_the_rng_says(toy_home: Path, tmp_path: Path) -> None:
    """Re-derive every choice of a sequential AIDE run from the engine's documented RNG."""
    decide = by_node({1: "crash", 4: "crash", 6: "crash", 9: "crash", 12: "crash"})
    for seed in range(4):
        nodes = search(tmp_path, "aide", decide, seed=seed, nodes=16)
        debugged = improved = 0
        for k in range(3, len(nodes)):
            before = nodes[:k]
            buggy = [
                n
                for n in before
                if n.status == "buggy" and n.debug_depth < 5 and not any(c.parent == n.id for c in before)
            ]
            rng = search_rng(seed, k, 0)
            if buggy and rng.random() < 0.5:
                assert (nodes[k].action, nodes[k].parent) == ("debug", rng.choice(buggy).id), (seed, k)
                debugged += 1
            else:
                best = min((n for n in before if n.valid), key=lambda n: (n.time_ms or 0.0, n.id))
                assert (nodes[k].action, nodes[k].parent) == ("improve", best.id), (seed, k)
                improved += 1
        assert improved > 0
    assert debugged > 0


class ScriptedRandom:
    """A stand-in for random.Random whose draws are given."""

    def __init__(self, draws: list[float]) -> None:
        self.draws = list(draws)
        self.asked = 0

    def random(self) -> float:
        self.asked += 1
        return self.draws.pop(0)

    def choice(self, seq: list[Node]) -> Node:
        return seq[-1]


def _node(i: int, status: str, parent: int | None = None, time_ms: float = 100.0, debug_depth: int = 0) -> Node:
    result = RunResult(val_loss=0.9, train_time_ms=time_ms, reached_target=True, exit_code=0)
    if status == "buggy":
        result = RunResult(exit_code=1, error="crash")
    return Node.model_validate(
        {
            "id": i,
            "parent": parent,
            "action": "draft" if parent is None else "improve",
            "status": status,
            "result": result,
            "debug_depth": debug_depth,
        }
    )


@pytest.mark.parametrize(("draw", "expected"), [(0.49, Action.debug(2)), (0.5, Action.improve(1))])
def test_aide_step_follows_the_draw(draw: float, expected: Action) -> None:
    nodes = [_node(0, "valid", time_ms=200), _node(1, "valid", time_ms=100), _node(2, "buggy")]
    rng = ScriptedRandom([draw])
    state = SearchState(nodes=nodes, pending=[], budget_left=5, rng=rng)  # type: ignore[arg-type]
    assert get_scaffold("aide").step(state) == [expected]
    assert rng.asked == 1


def test_aide_does_not_draw_without_a_debuggable_leaf() -> None:
    # Node 2 is buggy but too deep; node 3 is buggy but not a leaf (a pending debug of it).
    nodes = [_node(0, "valid"), _node(1, "valid", time_ms=50), _node(2, "buggy", debug_depth=5), _node(3, "buggy")]
    rng = ScriptedRandom([])
    state = SearchState(nodes=nodes, pending=[Action.debug(3)], budget_left=5, rng=rng)  # type: ignore[arg-type]
    assert get_scaffold("aide").step(state) == [Action.improve(1)]
    assert rng.asked == 0


def test_multi_aide_improves_three_at_once_and_debugs_one() -> None:
    nodes = [_node(0, "valid"), _node(1, "buggy"), _node(2, "valid", time_ms=10)]
    s = get_scaffold("multi-aide")
    assert s.step(SearchState(nodes, [], 9, ScriptedRandom([0.9]))) == [Action.improve(2)] * 3  # type: ignore[arg-type]
    assert s.step(SearchState(nodes, [], 9, ScriptedRandom([0.1]))) == [Action.debug(1)]  # type: ignore[arg-type]


def test_drafts_come_first_and_are_cut_to_the_budget() -> None:
    s = get_scaffold("forest")
    assert s.step(SearchState([], [], 2)) == [Action.draft()] * 2
    assert s.step(SearchState([], [Action.draft()], 20)) == [Action.draft()] * 2
    assert s.step(SearchState([], [Action.draft()] * 3, 20)) == [], "waits for the drafts"


# ---- parameters -----------------------------------------------------------------------------------


def test_presets_have_the_papers_parameters() -> None:
    table = {
        "flat": (None, 1, 0.0),
        "tree": (1, 3, 0.0),
        "forest": (3, 3, 0.0),
        "aide": (3, 1, 0.5),
        "multi-aide": (3, 3, 0.5),
    }
    for preset, (drafts, branching, debug_prob) in table.items():
        d = get_scaffold(preset).describe()
        assert (d["initial_drafts"], d["branching"], d["debug_prob"]) == (drafts, branching, debug_prob), preset
        assert d["nodes"] == 20
        if debug_prob:
            assert d["max_debug_depth"] == 5


def test_every_parameter_is_overridable_and_checked() -> None:
    s = get_scaffold("aide", {"debug_prob": 0.3, "nodes": 7, "max_debug_depth": 2, "branching": 2})
    assert s.describe() == {
        "scaffold": "aide",
        "nodes": 7,
        "initial_drafts": 3,
        "branching": 2,
        "debug_prob": 0.3,
        "max_debug_depth": 2,
    }
    assert s.budget == 7
    with pytest.raises(ConfigError, match="debug_prob"):
        get_scaffold("aide", {"debug_prob": 1.5})
    with pytest.raises(ConfigError, match="known parameters: nodes, initial_drafts"):
        get_scaffold("tree", {"beam": 2})
    with pytest.raises(ConfigError, match="unknown scaffold 'beam'"):
        get_scaffold("beam")


# ---- feedback to the model ---------------------------------------------------------------------


def test_improve_prompts_carry_the_parents_results_and_debug_prompts_its_error(toy_home: Path, tmp_path: Path) -> None:
    model = ScriptedModel(by_node({1: "crash"}))
    engine = make_engine(
        tmp_path / "run", get_scaffold("aide", {"nodes": 8, "debug_prob": 1.0}), model, FakeExecutor(flood_lines=5000)
    )
    assert engine.run() == "finished"
    nodes = engine.journal.all()
    imp = next(n for n in nodes if n.action == "improve")
    parent = nodes[imp.parent or 0]
    assert parent.result is not None and parent.result.val_loss is not None
    prompt = model.prompts[imp.id]
    assert f"final val_loss {parent.result.val_loss:.4f} at step {parent.result.step}/400" in prompt
    assert f"train_time {parent.result.train_time_ms:.0f} ms" in prompt
    assert "reached the target val_loss 1.0" in prompt
    dbg = next(n for n in nodes if n.action == "debug")
    prompt = model.prompts[dbg.id]
    assert "## This script failed\nexited with status 1" in prompt
    assert "RuntimeError: deliberate crash" in prompt
    assert "noise line 10" not in prompt, "the log tail is bounded"
    assert len(prompt) < 12_000
    # Hints reach every prompt verbatim, indentation included.
    assert all("if True:\n    RATE = RATE * 2  # indented\n" in p for p in model.prompts.values())


def test_analysis_step_is_saved_counted_and_shown_to_children(toy_home: Path, tmp_path: Path) -> None:
    model = ScriptedModel(tokens=10)
    engine = make_engine(tmp_path / "run", get_scaffold("tree", {"nodes": 4}), model, analyze=True, max_parallel=2)
    assert engine.run() == "finished"
    nodes = engine.journal.all()
    for n in nodes:
        ndir = engine.node_dir(n.id)
        assert (ndir / "analysis.md").read_text() == f"analysis of node {n.id}: looks fine.\n"
        assert f"Analysis: analysis of node {n.id}" in n.summary
        purposes = [ex.purpose for ex in read_exchanges(ndir)]
        assert purposes == ["code", "analysis"]
        assert n.usage.calls == 2 and n.usage.input_tokens == 20
    assert "Analysis: analysis of node 0: looks fine." in model.prompts[1]
    assert engine.usage().calls == 8


# ---- the escape hatch: a scaffold with its own LLM calls --------------------------------------------


class Ideator(Scaffold):
    """Asks the model for an idea before each draft and hands it to the coder as a note."""

    name = "ideator-test"

    def step(self, state: SearchState) -> list[Action]:
        idea = state.context.complete([Message(role="user", content="One idea, please.")], purpose="ideation")
        assert state.context.task is not None and "RATE" in state.context.files(None)["train.py"]
        return [Action.draft(note=f"Try this: {idea}")]


def test_a_scaffold_can_ask_the_model_through_the_engine(toy_home: Path, tmp_path: Path) -> None:
    model = ScriptedModel(tokens=7)
    engine = make_engine(tmp_path / "run", Ideator(nodes=3), model)
    assert engine.run() == "finished"
    exchanges = read_exchanges(tmp_path / "run" / "scaffold")
    assert [ex.purpose for ex in exchanges] == ["ideation"] * 3
    assert "## Direction for this attempt\n\nTry this: ideation of node None: looks fine." in model.prompts[0]
    assert engine.usage().calls == 6 and engine.usage().input_tokens == 42
    # The scaffold's calls count against the budget, and a resumed run still sees them.
    from harness.search.engine import spent

    assert spent(tmp_path / "run").input_tokens == 42


def test_a_scaffolds_calls_stop_at_the_budget(toy_home: Path, tmp_path: Path) -> None:
    engine = make_engine(tmp_path / "run", Ideator(nodes=10), ScriptedModel(tokens=100), budget=Budget(max_tokens=350))
    assert engine.run() == "stopped"
    assert engine.stop_reason is not None and "token budget" in engine.stop_reason
    assert len(engine.journal.all()) < 10


def test_a_state_outside_the_engine_has_no_model() -> None:
    with pytest.raises(ConfigError, match="no model"):
        SearchState([], [], 1).context.complete([Message(role="user", content="hi")])


def test_scripted_model_rates_make_later_nodes_faster(toy_home: Path, tmp_path: Path) -> None:
    nodes = search(tmp_path, "flat", nodes=3)
    times = [n.time_ms for n in nodes]
    assert all(t is not None for t in times) and times == sorted(times, reverse=True)
    journal = Journal(tmp_path / "flat-0")
    assert journal.best() is not None and journal.best() == nodes[-1]
