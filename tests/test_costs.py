"""Spend per run and FSR at equal budget, on run directories whose figures are known."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.costs import budget_curve, equal_budget, run_cost
from harness.eval.config import EvalConfig
from harness.eval.log import Confirmation, Reference, RunInfo, TaskScore, write_run
from harness.machine import this_machine
from harness.models.base import Usage
from harness.outcome import RunResult
from harness.search.journal import Journal, Node


def _node(nid: int, status: str, time_ms: float | None, cost: float, wall_s: float) -> Node:
    result = RunResult(
        val_loss=0.9 if status == "valid" else 2.0,
        train_time_ms=time_ms,
        reached_target=status == "valid",
        exit_code=0,
        wall_time_s=wall_s,
    )
    return Node(id=nid, parent=None, action="draft", status=status, result=result, usage=Usage(cost_usd=cost))  # type: ignore[arg-type]


def _run(root: Path, name: str, nodes: list[Node], *, fsr: float, task: str = "toy-0", gpus: str | None = None) -> Path:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    ref = Reference(
        source="calibrated", from_record="a", to_record="b", t_ref_ms=1000.0, t_next_ms=500.0, next_ratio=0.5
    )
    score = TaskScore(
        task=task,
        fsr=fsr,
        best_node=None,
        best_time_ms=None,
        candidate_ratio=None,
        reference=ref,
        nodes=1,
        valid_nodes=1,
    )
    cost = sum(n.usage.cost_usd for n in nodes)
    info = RunInfo(
        run_id=name,
        config=EvalConfig(task=task, model="m/x", scaffold="flat", seed=len(name), gpus=gpus),
        track=task.rsplit("-", 1)[0],
        status="finished",
        machine=this_machine(),
        usage=Usage(cost_usd=cost, input_tokens=1000, output_tokens=100),
        score=score,
    )
    write_run(run_dir, info)
    journal = Journal(run_dir)
    for n in nodes:
        journal.finish(n)
    return run_dir


@pytest.fixture
def results(toy_home: Path, tmp_path: Path) -> Path:
    root = tmp_path / "results"
    # Run A: an invalid node, then 800 ms and 600 ms (FSR 0.4 and 0.8 against 1000 -> 500 ms).
    a = _run(
        root,
        "a",
        [
            _node(0, "invalid", 1200.0, 0.1, 100.0),
            _node(1, "valid", 800.0, 0.1, 200.0),
            _node(2, "valid", 600.0, 0.3, 300.0),
        ],
        fsr=0.8,
    )
    (a / "confirm.json").write_text(
        Confirmation(
            node=2, candidate_ms=[600.0, 700.0], reference_ms=[1000.0, 1000.0], next_ms=[500.0, 550.0]
        ).model_dump_json()
    )
    # Run B, same agent: one node at 700 ms (FSR 0.6) that cost a dollar.
    _run(root, "b", [_node(0, "valid", 700.0, 1.0, 50.0)], fsr=0.6)
    return root


def test_run_cost_counts_node_wall_times_and_confirmation_runs(results: Path) -> None:
    from harness.rundir import read_run_info

    info = read_run_info(results / "a")
    assert info is not None
    cost = run_cost(results / "a", info)
    assert cost.search_hours == pytest.approx(600 / 3600)
    # Record i+1's runs in the rounds count too: 600 + 700 + 2 x 1000 + 500 + 550 ms.
    assert cost.confirm_hours == pytest.approx(4350 / 3.6e6)
    assert cost.cpu_hours == pytest.approx(600 / 3600 + 4350 / 3.6e6) and cost.gpu_hours is None
    assert cost.fsr_per_usd == pytest.approx(0.8 / 0.5)
    assert cost.fsr_per_cpu_hour == pytest.approx(0.8 / cost.cpu_hours)


def test_budget_curve_is_the_best_so_far(results: Path) -> None:
    from harness.rundir import read_journal, read_run_info

    info = read_run_info(results / "a")
    assert info is not None
    curve = budget_curve(read_journal(results / "a").all(), info)
    assert list(curve["best_fsr"]) == pytest.approx([0.0, 0.4, 0.8])
    assert list(curve["cost_usd"]) == pytest.approx([0.1, 0.2, 0.5])


def test_fsr_at_equal_budget_by_hand(results: Path) -> None:
    table = equal_budget(results, nodes=(1, 2, 3), dollars=(0.3, 1.0))
    got = {(r.budget, r.level): r.mean_fsr for r in table.itertuples()}
    assert got == pytest.approx(
        {
            ("nodes", 1.0): (0.0 + 0.6) / 2,
            ("nodes", 2.0): (0.4 + 0.6) / 2,
            ("nodes", 3.0): (0.8 + 0.6) / 2,
            ("usd", 0.3): (0.4 + 0.0) / 2,  # run B's only node cost more than $0.30
            ("usd", 1.0): (0.8 + 0.6) / 2,
        }
    )
    assert set(table["runs"]) == {2}
    default = equal_budget(results, nodes=(1,))
    assert list(default[default["budget"] == "usd"]["level"]) == [0.01, 0.03, 0.1, 0.3, 1.0]


def test_gpu_hours_count_every_gpu_of_a_gpu_track(tmp_path: Path) -> None:
    from harness.rundir import read_run_info

    run_dir = _run(tmp_path, "g", [_node(0, "valid", 600.0, 0.5, 1800.0)], fsr=0.5, task="nanogpt-0", gpus="4")
    info = read_run_info(run_dir)
    assert info is not None
    cost = run_cost(run_dir, info)
    assert cost.gpus_per_run == 4 and cost.gpu_hours == pytest.approx(2.0) and cost.cpu_hours is None
    assert cost.fsr_per_gpu_hour == pytest.approx(0.25)
