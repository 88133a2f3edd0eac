"""The engine: resume after a kill, budget stops, the paper barrier versus async refilling, and
cumulative chains, on the toy track (real subprocess runs where resuming is what is tested)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli.app import app
from harness.eval.config import EvalConfig
from harness.eval.cumulative import read_chain, run_chain
from harness.eval.log import read_run
from harness.execution.local import LocalExecutor
from harness.search import get_scaffold
from harness.search.budget import Budget
from harness.search.engine import spent
from harness.search.journal import Journal, JournalEvent
from tests.conftest import REPO
from tests.test_scaffolds import FakeExecutor, Ideator, ScriptedModel, make_engine
from tests.toytrack import write_toy_track


def _stamps(run_dir: Path) -> dict[int, int]:
    """Finished node id -> mtime of its result.json."""
    return {n: (run_dir / "nodes" / str(n) / "result.json").stat().st_mtime_ns for n in Journal(run_dir).nodes}


def _started(run_dir: Path) -> Counter[int]:
    events = [JournalEvent.model_validate_json(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    return Counter(e.node_id for e in events if e.event == "started" and e.node_id is not None)


def _check_resumed(run_dir: Path, before: dict[int, int], total: int) -> None:
    journal = Journal(run_dir)
    assert sorted(journal.nodes) == list(range(total)), "every id once, none skipped"
    assert not journal.unfinished()
    assert _stamps(run_dir) | before == _stamps(run_dir), "no finished node was redone"
    assert set(_started(run_dir).values()) == {1}, "an unfinished node reruns under its own id"


# ---- resume --------------------------------------------------------------------------------------


def test_resume_after_interrupt_redoes_only_unfinished_nodes(toy_home: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    scaffold = get_scaffold("flat", {"nodes": 6})
    engine = make_engine(
        run_dir, scaffold, ScriptedModel(interrupt_at=3), LocalExecutor(), max_parallel=2, schedule="async"
    )
    with pytest.raises(KeyboardInterrupt):
        engine.run()
    before = _stamps(run_dir)
    assert 0 < len(before) < 6 and 3 not in before
    assert 3 in Journal(run_dir).unfinished()
    time.sleep(0.01)  # so that a rewritten result.json would show a new mtime
    again = make_engine(run_dir, scaffold, ScriptedModel(), LocalExecutor(), max_parallel=2, schedule="async")
    assert again.run() == "finished"
    _check_resumed(run_dir, before, 6)
    assert all(n.valid for n in again.journal.all())


DRIVER = """
import sys
from pathlib import Path
from harness.execution.local import LocalExecutor
from harness.search import get_scaffold
from tests.test_scaffolds import ScriptedModel, make_engine

engine = make_engine(Path(sys.argv[1]), get_scaffold("flat", {"nodes": 8}), ScriptedModel(delay_s=0.05),
                     LocalExecutor(), max_parallel=2, schedule=sys.argv[2])
engine.run()
"""


@pytest.mark.parametrize("schedule", ["async", "paper"])
def test_resume_after_sigkill(toy_home: Path, tmp_path: Path, schedule: str) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(run_dir), schedule], cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(Journal(run_dir).nodes) < 2:
            assert proc.poll() is None, "the driver ended before it was killed"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    before = _stamps(run_dir)
    assert 2 <= len(before) < 8, before
    time.sleep(0.01)
    engine = make_engine(run_dir, get_scaffold("flat", {"nodes": 8}), ScriptedModel(), LocalExecutor(), max_parallel=2)
    assert engine.run() == "finished"
    _check_resumed(run_dir, before, 8)


def test_interrupt_with_analysis_keeps_every_run_that_ended(toy_home: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    scaffold = get_scaffold("flat", {"nodes": 6})
    first = FakeExecutor(seconds_per_train_ms=0.0005)
    engine = make_engine(
        run_dir, scaffold, ScriptedModel(interrupt_at=3), first, max_parallel=2, schedule="async", analyze=True
    )
    with pytest.raises(KeyboardInterrupt):
        engine.run()
    ran_before = {label.rsplit("/", 1)[1] for label, _, _ in first.runs}
    assert ran_before and {str(n) for n in Journal(run_dir).nodes} == ran_before, "every run that ended is kept"
    second = FakeExecutor()
    resumed = make_engine(run_dir, scaffold, ScriptedModel(), second, max_parallel=2, analyze=True)
    assert resumed.run() == "finished" and sorted(resumed.journal.nodes) == list(range(6))
    assert not ran_before & {label.rsplit("/", 1)[1] for label, _, _ in second.runs}, "no run is done twice"


def test_notes_survive_a_resume(toy_home: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        make_engine(run_dir, Ideator(nodes=3), ScriptedModel(interrupt_at=1)).run()
    model = ScriptedModel()
    assert make_engine(run_dir, Ideator(nodes=3), model).run() == "finished"
    assert "## Direction for this attempt\n\nTry this: ideation of node None" in model.prompts[1]


# ---- budgets -------------------------------------------------------------------------------------


def test_budget_stops_cleanly_and_a_higher_budget_resumes(toy_home: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    scaffold = get_scaffold("forest", {"nodes": 6})
    engine = make_engine(run_dir, scaffold, ScriptedModel(tokens=100), budget=Budget(max_tokens=250))
    assert engine.run() == "stopped"
    assert engine.stop_reason is not None and "token budget reached" in engine.stop_reason
    journal = Journal(run_dir)
    assert sorted(journal.nodes) == [0, 1, 2]
    assert list(journal.unfinished()) == [3, 4, 5], "the batch cut by the budget is started, not lost"
    assert '"event":"stopped"' in (run_dir / "journal.jsonl").read_text()
    before = _stamps(run_dir)
    time.sleep(0.01)
    resumed = make_engine(
        run_dir, scaffold, ScriptedModel(tokens=100), budget=Budget(max_tokens=10_000, spent=spent(run_dir))
    )
    assert resumed.run() == "finished"
    _check_resumed(run_dir, before, 6)
    assert resumed.usage().input_tokens == 600


def test_a_larger_node_budget_continues_the_search(toy_home: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert make_engine(run_dir, get_scaffold("tree", {"nodes": 4}), ScriptedModel()).run() == "finished"
    before = _stamps(run_dir)
    engine = make_engine(run_dir, get_scaffold("tree", {"nodes": 7}), ScriptedModel())
    assert engine.run() == "finished"
    _check_resumed(run_dir, before, 7)
    assert [n.parent for n in engine.journal.all()] == [None, 0, 0, 0, 3, 3, 3]


# ---- schedules -----------------------------------------------------------------------------------


def _intervals(model: ScriptedModel, executor: FakeExecutor) -> tuple[dict[int, tuple[float, float]], ...]:
    code = {n: (t0, t1) for purpose, n, t0, t1 in model.calls if purpose == "code" and n is not None}
    runs = {int(label.rsplit("/", 1)[1]): (t0, t1) for label, t0, t1 in executor.runs}
    return code, runs


def test_paper_schedule_waits_for_the_whole_batch(toy_home: Path, tmp_path: Path) -> None:
    model, executor = ScriptedModel(delay_s=0.02), FakeExecutor(seconds_per_train_ms=0.0005)
    engine = make_engine(tmp_path / "run", get_scaffold("forest", {"nodes": 9}), model, executor, max_parallel=3)
    assert engine.run() == "finished"
    code, runs = _intervals(model, executor)
    batches = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    for prev, batch in itertools.pairwise(batches):
        assert min(code[n][0] for n in batch) >= max(runs[n][1] for n in prev)
    # Within a batch, runs overlap (three slots).
    assert max(runs[n][0] for n in batches[0]) < min(runs[n][1] for n in batches[0])


def test_paper_schedule_thinks_only_between_batches(toy_home: Path, tmp_path: Path) -> None:
    model, executor = ScriptedModel(delay_s=0.02), FakeExecutor(seconds_per_train_ms=0.0003)
    engine = make_engine(tmp_path / "run", get_scaffold("aide", {"nodes": 6}), model, executor, max_parallel=1)
    assert engine.run() == "finished"
    code, runs = _intervals(model, executor)
    # After the drafts (one batch, coded and run as a pipeline), each AIDE step is a batch of one.
    for n in range(3, 6):
        a0, a1 = code[n]
        assert all(a1 <= r0 or a0 >= r1 for r0, r1 in runs.values()), n
    assert code[1][0] < runs[0][1], "within a batch, the next draft is coded while the first runs"


def test_async_codes_the_next_candidates_while_runs_go_on(toy_home: Path, tmp_path: Path) -> None:
    model, executor = ScriptedModel(delay_s=0.03), FakeExecutor(seconds_per_train_ms=0.0008)
    engine = make_engine(
        tmp_path / "run", get_scaffold("flat", {"nodes": 8}), model, executor, max_parallel=2, schedule="async"
    )
    assert engine.run() == "finished"
    code, runs = _intervals(model, executor)
    overlapping = [n for n, (a0, a1) in code.items() if any(r0 < a1 and a0 < r1 for r0, r1 in runs.values())]
    assert len(overlapping) >= 4, "coding overlaps running"
    # Run slots are refilled from candidates coded ahead: most runs start while the other slot
    # is busy. (Counted, not timed: a busy-time fraction fails whenever the machine is loaded.)
    alongside = [n for n, (s0, _) in runs.items() if any(m != n and r0 <= s0 < r1 for m, (r0, r1) in runs.items())]
    assert len(alongside) >= len(runs) // 2, (alongside, runs)
    assert max(sum(1 for r0, r1 in runs.values() if r0 <= t < r1) for t, _ in runs.values()) <= 2


def test_async_keeps_aide_choosing_while_runs_go_on(toy_home: Path, tmp_path: Path) -> None:
    model, executor = ScriptedModel(), FakeExecutor(seconds_per_train_ms=0.0003)
    engine = make_engine(
        tmp_path / "run", get_scaffold("aide", {"nodes": 10}), model, executor, max_parallel=2, schedule="async"
    )
    assert engine.run() == "finished"
    nodes = engine.journal.all()
    assert len(nodes) == 10 and sum(n.parent is None for n in nodes) == 3


# ---- cumulative ----------------------------------------------------------------------------------


@pytest.fixture
def chain_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A toy track with three records, so two tasks: toy-0 and toy-1."""
    root = write_toy_track(tmp_path / "home", rates=(0.02, 0.04, 0.08))
    monkeypatch.setenv("SPEEDRUN_HOME", str(root))
    return root


def test_cumulative_chain_starts_each_task_from_the_agents_own_solution(chain_home: Path, tmp_path: Path) -> None:
    base = EvalConfig(
        task="toy-0",
        model="null",
        scaffold="flat",
        scaffold_args={"nodes": 1},
        results_dir=tmp_path / "results",
        calibration_runs=1,
        confirm_runs=0,
    )
    chain = run_chain(base, ["toy-0", "toy-1"])
    assert chain.status == "finished" and [s.task for s in chain.steps] == ["toy-0", "toy-1"]
    first, second = chain.steps
    assert first.started_from == "record" and first.start_file is None
    assert first.hand_over_from == "best node" and first.hand_over is not None
    assert second.started_from == "previous" and second.start_file == first.hand_over
    root = tmp_path / "results" / "cumulative" / chain.chain_id
    info = read_run(root / second.run_id)
    assert info is not None and info.config.start_from == first.hand_over
    # null changes nothing: toy-1 started from toy-0's (slow) solution, not from record 1's script.
    node0 = (root / second.run_id / "nodes" / "0" / "workspace" / "train.py").read_text()
    assert "RATE = 0.02\n" in node0
    # Scored against the human times of record 1 -> 2: slower than record 1, so FSR 0.
    assert second.fsr == 0.0 and second.t_ref_ms is not None and second.t_next_ms is not None
    assert read_chain(root) == chain
    # Re-running resumes: nothing is redone.
    stamps = {p: p.stat().st_mtime_ns for p in root.glob("*/nodes/*/result.json")}
    assert run_chain(base, ["toy-0", "toy-1"]).steps == chain.steps
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())


def test_cli_cumulative_prints_fsr_per_step(chain_home: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "--track",
            "toy",
            "--tasks",
            "toy-0..toy-1",
            "--cumulative",
            "--model",
            "oracle",
            "--nodes",
            "1",
            "--calibration-runs",
            "1",
            "--confirm-runs",
            "0",
            "--analyze",
            "--results-dir",
            str(tmp_path / "r"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "toy-0: FSR" in res.output and "toy-1: FSR" in res.output and "mean FSR" in res.output
    chains = list((tmp_path / "r" / "cumulative").iterdir())
    assert len(chains) == 1 and (chains[0] / "leaderboard.csv").is_file()
    assert (
        not (tmp_path / "r" / "leaderboard.csv").exists()
        or "toy-0" not in (tmp_path / "r" / "leaderboard.csv").read_text()
    ), "chains stay out of the ordinary leaderboard"
    analysis = next(chains[0].glob("*/nodes/0/analysis.md")).read_text()
    assert analysis.startswith("[oracle] no analysis of node 0")
