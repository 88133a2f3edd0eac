"""A results directory written before the restructure (the flat `harness/` of 2026-11-23, commit
de3893b) still reads back and resumes with today's code.

`tests/fixtures/pre-restructure/` was made by that commit's own `speedrun eval` on its toy track
(`home/`, with its calibration in `cache/`): one finished oracle run (flat, confirmed), and one
aide search of 4 nodes killed with SIGKILL after its first node had finished.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli.app import app
from harness.eval.evaluate import read_run
from harness.leaderboard import collect
from harness.search.journal import Journal

FIXTURE = Path(__file__).parent / "fixtures" / "pre-restructure"
FINISHED = "toy-0__oracle__flat__pseudocode__s0"
INTERRUPTED = "toy-0__oracle__aide__pseudocode__s0"


@pytest.fixture
def old(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "old"
    shutil.copytree(FIXTURE, root)
    monkeypatch.setenv("SPEEDRUN_HOME", str(root / "home"))
    monkeypatch.setenv("SPEEDRUN_CACHE", str(root / "cache"))
    return root


def _node_events(run_dir: Path) -> list[int]:
    lines = (run_dir / "journal.jsonl").read_text().splitlines()
    return [e["node_id"] for e in map(json.loads, lines) if e["event"] == "node"]


def test_old_runs_read_back(old: Path) -> None:
    info = read_run(old / "results" / FINISHED)
    assert info is not None and info.status == "finished" and info.score is not None
    assert info.score.fsr == pytest.approx(1.025, abs=5e-4) and info.score.valid_nodes == 1
    assert [n.status for n in Journal(old / "results" / FINISHED).all()] == ["valid"]
    rows = collect(old / "results")
    assert sorted(rows["status"]) == ["finished", "running"]


def test_an_old_interrupted_search_resumes_without_redoing_its_finished_node(old: Path) -> None:
    run_dir = old / "results" / INTERRUPTED
    assert _node_events(run_dir) == [0]
    args = ["eval", "--track", "toy", "--task", "toy-0", "--model", "oracle", "--scaffold", "aide"]
    args += ["--nodes", "4", "--max-parallel", "1", "--calibration-runs", "1", "--confirm-runs", "1"]
    result = CliRunner().invoke(app, [*args, "--results-dir", str(old / "results")])
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output
    events = _node_events(run_dir)
    assert sorted(events) == [0, 1, 2, 3] and events.count(0) == 1
    info = read_run(run_dir)
    assert info is not None and info.status == "finished" and info.score is not None
    assert info.score.valid_nodes == 4


def test_an_old_finished_run_is_not_run_again(old: Path) -> None:
    run_dir = old / "results" / FINISHED
    before = (run_dir / "nodes" / "0" / "run.log").read_bytes()
    args = ["eval", "--track", "toy", "--task", "toy-0", "--model", "oracle"]
    args += ["--calibration-runs", "1", "--confirm-runs", "1", "--results-dir", str(old / "results")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert _node_events(run_dir) == [0]
    assert (run_dir / "nodes" / "0" / "run.log").read_bytes() == before
