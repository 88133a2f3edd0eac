"""The leaderboard's rows and aggregates, from run.json files as evaluations write them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from harness.cli.app import app
from harness.eval.config import EvalConfig
from harness.eval.log import Reference, RunInfo, TaskScore, write_run
from harness.leaderboard import (
    COLUMNS,
    DISPLAY_COLUMNS,
    SELF_REPORTED,
    TRUST_COLUMNS,
    breakdowns,
    collect,
    per_task,
    summary,
    write_leaderboard,
)
from harness.machine import MachineInfo
from harness.models.base import Usage
from harness.scoring import estimate_fsr

MACHINE = MachineInfo(hostname="h", cpu="test cpu", cores=2, arch="x86_64", python="3.11", torch="none", gpus=[])
REF = Reference(
    source="calibrated", from_record="r0", to_record="r1", t_ref_ms=300_000, t_next_ms=200_000, next_ratio=2 / 3
)


def _run(
    root: Path,
    task: str,
    fsr: float | None,
    *,
    seed: int = 0,
    status: str = "finished",
    model: str = "m",
    scaffold: str = "flat",
    hints: str = "pseudocode",
    cost: float = 0.0,
    **extra: object,
) -> RunInfo:
    cfg = EvalConfig(task=task, model=model, scaffold=scaffold, hints=hints, seed=seed, results_dir=root)
    ref = REF.model_copy(update={"source": extra.pop("source", "calibrated")})
    score = (
        TaskScore(
            task=task,
            fsr=fsr,
            best_node=0,
            best_time_ms=None,
            candidate_ratio=None,
            reference=ref,
            nodes=1,
            valid_nodes=1 if fsr else 0,
            estimate=extra.pop("estimate", None),
            protection=extra.pop("protection", []),
        )
        if fsr is not None
        else None
    )
    info = RunInfo(
        run_id=cfg.run_id(),
        config=cfg,
        track="mini",
        status=status,  # type: ignore[arg-type]
        machine=MACHINE,
        usage=Usage(cost_usd=cost),
        score=score,
        **extra,  # type: ignore[arg-type]
    )
    (root / info.run_id).mkdir(parents=True, exist_ok=True)
    write_run(root / info.run_id, info)
    return info


def test_seeds_are_averaged_per_task_before_tasks_are(tmp_path: Path) -> None:
    # Regression (issue 16): task A has two seeds (0.6, 0.8), task B one (0.2). Pooling the
    # rows gave "tasks 2, mean 0.533" = (0.6 + 0.8 + 0.2) / 3; per task it is A 0.7, B 0.2,
    # mean (0.7 + 0.2) / 2 = 0.45.
    _run(tmp_path, "A", 0.6, seed=0)
    _run(tmp_path, "A", 0.8, seed=1)
    _run(tmp_path, "B", 0.2, seed=0)
    df = collect(tmp_path)
    row = summary(df).iloc[0]
    assert row["tasks"] == 2 and row["runs"] == 3
    assert row["mean_fsr"] == pytest.approx(0.45)
    assert row["iqm"] == pytest.approx(0.45), "two tasks: nothing to trim"
    tasks = per_task(df).set_index("task")
    assert tasks.loc["A", "fsr"] == pytest.approx(0.7) and tasks.loc["A", "runs"] == 2
    assert (tasks.loc["A", "fsr_min"], tasks.loc["A", "fsr_max"]) == (0.6, 0.8)


def test_failed_runs_score_zero_and_unfinished_runs_are_counted_apart(tmp_path: Path) -> None:
    _run(tmp_path, "A", 0.9, seed=0)
    _run(tmp_path, "A", None, seed=1, status="failed")  # no valid candidate: scores 0
    _run(tmp_path, "B", 0.0, seed=0)  # finished, no valid node: FSR 0
    _run(tmp_path, "C", None, seed=0, status="stopped")  # resumable: not a result yet
    _run(tmp_path, "D", None, seed=0, status="running")
    row = summary(collect(tmp_path)).iloc[0]
    # A = (0.9 + 0) / 2 = 0.45, B = 0; mean over the two scored tasks 0.225
    assert row["tasks"] == 2 and row["runs"] == 3 and row["failed"] == 1 and row["unfinished"] == 2
    assert row["mean_fsr"] == pytest.approx(0.225)


def test_hand_computed_benchmark_with_ci_iqm_and_breakdowns(tmp_path: Path) -> None:
    # Agent 1 (o3 · flat · pseudocode) on four tasks: 0.1, 0.4, 0.5, 2.0.
    #   mean (0.1 + 0.4 + 0.5 + 2.0) / 4 = 0.75; IQM cuts one each end: (0.4 + 0.5) / 2 = 0.45.
    # Agent 2 (o3 · tree · text) on T1 with two seeds 0.2 and 0.6 -> 0.4, and T2: 0.
    #   mean (0.4 + 0) / 2 = 0.2.
    for task, value in zip(["T1", "T2", "T3", "T4"], [0.1, 0.4, 0.5, 2.0], strict=True):
        _run(tmp_path, task, value, model="o3", cost=1.0)
    _run(tmp_path, "T1", 0.2, seed=0, model="o3", scaffold="tree", hints="text", cost=0.5)
    _run(tmp_path, "T1", 0.6, seed=1, model="o3", scaffold="tree", hints="text", cost=0.5)
    _run(tmp_path, "T2", 0.0, seed=0, model="o3", scaffold="tree", hints="text", cost=0.5)
    df = collect(tmp_path)
    summ = summary(df).set_index("scaffold")
    flat, tree = summ.loc["flat"], summ.loc["tree"]
    assert flat["mean_fsr"] == pytest.approx(0.75) and flat["iqm"] == pytest.approx(0.45)
    assert flat["ci_low"] < flat["mean_fsr"] < flat["ci_high"]
    assert flat["review"] == 1, "2.0 is above 1.5: flagged, not capped"
    assert tree["mean_fsr"] == pytest.approx(0.2) and tree["cost_usd"] == pytest.approx(1.5)
    assert (flat["selection"], flat["reference_source"]) == ("mean", "calibrated")
    by = breakdowns(df)
    # By model: both agents are o3. Per task, the agents' task scores are averaged:
    #   T1 (0.1 + 0.4) / 2 = 0.25, T2 (0.4 + 0) / 2 = 0.2, T3 0.5, T4 2.0 -> mean 2.95 / 4 = 0.7375
    model = by["model"].iloc[0]
    assert model["model"] == "o3" and model["tasks"] == 4 and model["runs"] == 7
    assert model["mean_fsr"] == pytest.approx(0.7375)
    assert list(by["hints"]["hints"]) == ["pseudocode", "text"]
    assert by["scaffold"].set_index("scaffold").loc["tree", "mean_fsr"] == pytest.approx(0.2)


def test_paper_conventions_are_labelled_options(tmp_path: Path) -> None:
    # One task, five seeds: 0.1 0.2 0.3 0.9 3.5 (3.5 lies outside [0, 3]).
    for seed, value in enumerate([0.1, 0.2, 0.3, 0.9, 3.5]):
        _run(tmp_path, "A", value, seed=seed)
    df = collect(tmp_path)
    assert summary(df)["mean_fsr"].iloc[0] == pytest.approx(5.0 / 5)  # (0.1+0.2+0.3+0.9+3.5)/5
    best = summary(df, selection="best-of-n").iloc[0]
    assert best["mean_fsr"] == pytest.approx(3.5) and best["selection"] == "best-of-n"
    # paper-top3: 3.5 counts as 0; the top three of 0.1 0.2 0.3 0.9 0 are 0.9 0.3 0.2 -> 1.4 / 3
    top3 = summary(df, selection="paper-top3").iloc[0]
    assert top3["mean_fsr"] == pytest.approx(1.4 / 3) and top3["selection"] == "paper-top3"
    # Fewer than three seeds are padded with the lowest of them: 0.5, 0.25 -> (0.5 + 0.25 + 0.25) / 3
    _run(tmp_path, "B", 0.5, seed=0)
    _run(tmp_path, "B", 0.25, seed=1)
    tasks = per_task(collect(tmp_path), selection="paper-top3").set_index("task")
    assert tasks.loc["B", "fsr"] == pytest.approx(1.0 / 3)


def test_rows_say_how_each_score_was_protected(tmp_path: Path) -> None:
    est = estimate_fsr([0.70, 0.72, 0.74], 2 / 3)
    _run(tmp_path, "A", est.fsr, estimate=est, protection=["audited", "clock-checked", "harness-evaluated"])
    _run(tmp_path, "B", 1.6, source="paper")
    _run(tmp_path, "C", None, status="failed")
    board, csv = write_leaderboard(tmp_path)
    assert list(board.columns) == COLUMNS + TRUST_COLUMNS
    assert csv.read_text().splitlines()[0].endswith(",run_id," + ",".join(TRUST_COLUMNS))
    df = board.set_index("task")
    assert df.loc["A", "protection"] == "audited, clock-checked, harness-evaluated"
    assert df.loc["A", "pairs"] == 3 and df.loc["A", "fsr_low"] == pytest.approx(est.low)
    assert df.loc["B", "protection"] == SELF_REPORTED and df.loc["B", "reference_source"] == "paper"
    assert bool(df.loc["B", "review"]) and df.loc["B", "fsr"] == 1.6
    assert not bool(df.loc["A", "review"]) and not bool(df.loc["C", "review"])
    assert pd.isna(df.loc["B", "fsr_low"])
    assert summary(df.reset_index())["reference_source"].iloc[0] == "mixed"


def test_old_run_json_without_the_new_fields_still_reads(tmp_path: Path) -> None:
    info = _run(tmp_path, "A", 0.8)
    path = tmp_path / info.run_id / "run.json"
    raw = json.loads(path.read_text())
    del raw["score"]["protection"], raw["score"]["estimate"]
    path.write_text(json.dumps(raw))
    row = collect(tmp_path).iloc[0]
    assert row["fsr"] == 0.8 and row["protection"] == SELF_REPORTED and pd.isna(row["pairs"])


def test_empty_results(tmp_path: Path) -> None:
    df = collect(tmp_path)
    assert df.empty and summary(df).empty and per_task(df).empty
    assert all(b.empty for b in breakdowns(df).values())


def test_cli_leaderboard_shows_per_task_mean_ci_and_iqm(tmp_path: Path) -> None:
    _run(tmp_path, "A", 0.6, seed=0)
    _run(tmp_path, "A", 0.8, seed=1)
    _run(tmp_path, "B", 0.2, seed=0)
    _run(tmp_path, "B", 1.7, seed=1, model="other")
    res = CliRunner().invoke(app, ["leaderboard", "--results-dir", str(tmp_path)], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "0.450" in res.output and "0.533" not in res.output
    assert "IQM" in res.output and "by model" in res.output
    assert "review" in res.output and "self-reported" in res.output
    assert set(DISPLAY_COLUMNS) <= set(COLUMNS)
