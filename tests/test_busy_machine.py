"""A measurement that notices when it was disturbed: a one-thread run that had a core for only
part of its wall time is measured again, and a machine that stays busy stops the evaluation
with the reason instead of caching or scoring a time that says nothing about the script."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import paths
from harness.errors import MachineBusy
from harness.eval.calibration import MAX_SPREAD, RecordTiming
from harness.eval.config import EvalConfig
from harness.eval.evaluate import evaluate
from harness.eval.measure import STARVED_CPU_SHARE, disturbance
from harness.outcome import MIN_CPU_SHARE, ClockCheck, RunResult, clock_problem


def test_a_starved_one_thread_run_is_told_apart() -> None:
    quiet = RunResult(wall_time_s=40.0, cpu_s=39.0)
    starved = RunResult(wall_time_s=180.0, cpu_s=38.0)
    assert disturbance(quiet, threads=1) is None
    why = disturbance(starved, threads=1)
    assert why is not None and "21%" in why
    # Several threads, or no CPU figure: the share says nothing about starvation.
    assert disturbance(starved, threads=None) is None and disturbance(RunResult(wall_time_s=5.0), threads=1) is None
    assert STARVED_CPU_SHARE < 39 / 40


def test_a_calibration_whose_runs_scatter_is_not_settled() -> None:
    steady = RecordTiming(record_id="a", code_sha256="x", times_ms=[1000, 1100, 1200])
    scattered = RecordTiming(record_id="a", code_sha256="x", times_ms=[33_900, 182_500, 247_100])
    assert steady.settled and not scattered.settled
    assert RecordTiming(record_id="a", code_sha256="x", times_ms=[1000, 1000 * MAX_SPREAD]).settled


def test_an_evaluation_on_a_busy_machine_stops_with_the_reason(toy_home: Path, tmp_path: Path) -> None:
    """The toy records sleep instead of computing, which is exactly what a one-thread run looks
    like to the harness when another process holds its core: CPU far below wall time."""
    track = toy_home / "tasks" / "toy" / "track.toml"
    track.write_text(track.read_text() + "threads = 1\n")
    cfg = EvalConfig(task="toy-0", model="oracle", results_dir=tmp_path / "results", calibration_runs=1)
    with pytest.raises(MachineBusy, match=r"too busy to time runs: record 00-rate0.02 took .* with too little CPU"):
        evaluate(cfg)
    # Nothing was cached as a reference.
    assert not list((paths.cache_dir() / "calibration").rglob("*.json"))


def test_the_clock_allows_a_starved_run_its_untimed_share_at_the_pace_it_had() -> None:
    """Seen through Slurm with two candidates and another job on two cores: an honest oracle node
    left 13.3 s untimed where record i (measured quiet) leaves 9.0 s. With a core for half its
    time it is allowed twice the untimed time; the same run with a core throughout is not, and
    a run's hidden work is still counted as training time either way."""
    check = ClockCheck(reference_untimed_s=9.0, threads=1)
    assert check.allowed_untimed_s == pytest.approx(11.25)
    honest_starved = clock_problem(train_time_ms=4000, wall_s=17.3, check=check, cpu_s=8.6)
    assert honest_starved is None
    hidden_quiet = clock_problem(train_time_ms=4000, wall_s=17.3, check=check, cpu_s=17.0)
    assert hidden_quiet is not None and "at most 11.4 s allowed, the run having had the CPU 98%" in hidden_quiet
    # Where the share is unknown (several threads, or no CPU figure) nothing stretches.
    for unknown in (ClockCheck(reference_untimed_s=9.0), check):
        assert clock_problem(4000, 17.3, unknown, cpu_s=None if unknown is check else 8.6) is not None
    # The stretch is bounded: a run starved to 5% is judged as if it had a quarter of a core.
    assert check.allowed_for(wall_s=100.0, cpu_s=5.0) == pytest.approx(11.25 / MIN_CPU_SHARE)
