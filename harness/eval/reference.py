"""Record i's and record i+1's times for one task: from this machine's calibration (measured
now if missing) or, when asked for (`--references paper`), the paper's re-measured times."""

from __future__ import annotations

from typing import Any

from harness.errors import ConfigError
from harness.eval import calibration
from harness.eval.log import Reference
from harness.eval.measure import MeasureSpec
from harness.events import Event, EventSink
from harness.execution.base import Executor
from harness.machine import this_machine
from harness.manifests.tracks import Record, Track
from harness.scoring import paired_ratios

#: Where the paper's reference times were measured.
PAPER_HARDWARE = "8x NVIDIA H100 80GB HBM3"


def reference_plan(
    track: Track, a: Record, b: Record, key: str, target: float, runs: int, source: str = "measured"
) -> dict[str, Any]:
    """Which reference times a run would use, measuring nothing: the paper's when asked for, a
    calibration of this machine when it has both records, else a calibration to come."""
    if source == "paper":
        times = {r.id: r.reference.time_ms if r.reference else None for r in (a, b)}
        return {"source": "paper", "hardware": PAPER_HARDWARE, "time_ms": times}
    cal = calibration.load_calibration(track, key, target)
    if cal.has(a) and cal.has(b):
        return {
            "source": "calibrated",
            "file": str(calibration.calibration_path(track, key, target)),
            "time_ms": {a.id: cal.records[a.id].median_ms, b.id: cal.records[b.id].median_ms},
        }
    return {"source": "calibrate", "runs_per_record": runs, "hardware": this_machine().describe()}


def reference_times(
    track: Track,
    a: Record,
    b: Record,
    executor: Executor,
    spec: MeasureSpec,
    *,
    runs: int,
    loosened_target: bool,
    emit: EventSink,
    source: str = "measured",
) -> Reference:
    """The task's reference, calibrating the records this machine has no times for."""
    if source == "paper":
        here = this_machine()
        hardware = f"{len(here.gpus)}x {here.gpus[0]}" if here.gpus else "no GPU"
        emit(
            Event(
                "warning",
                f"reference times: the paper's re-measurement on {PAPER_HARDWARE}; this machine has {hardware}. "
                "The best node is still confirmed beside record i here; only record i+1's speed-up is the paper's",
            )
        )
        return paper_reference(a, b)
    cal = calibration.load_calibration(track, executor.calibration_key, spec.target_val_loss)
    missing = [r for r in (a, b) if not cal.has(r)]
    if missing:
        emit(
            Event(
                "phase",
                f"calibrating {', '.join(r.id for r in missing)} on this machine "
                f"({runs} runs each; cached for later evaluations)",
            )
        )
        cal = calibration.calibrate(
            track, missing if len(missing) == 1 else [a, b], runs=runs, executor=executor, spec=spec, on_event=emit
        )
    else:
        path = calibration.calibration_path(track, executor.calibration_key, spec.target_val_loss)
        emit(Event("info", f"reference times from the calibration of this machine ({path})"))
    ta, tb = cal.records[a.id], cal.records[b.id]
    ratio = cal.ratio(b.id, a.id)
    if ratio >= 1 and loosened_target:
        # At a loosened (smoke) target the chain's order need not hold; the run still
        # exercises every part, and the score says FSR is undefined.
        emit(
            Event(
                "warning",
                f"at target {spec.target_val_loss} record {b.id} is not faster than {a.id} here; "
                "FSR is undefined for this run",
            )
        )
    elif ratio >= 1:
        raise ConfigError(
            f"on this machine record {b.id} ({tb.median_ms:.0f} ms) is not faster than {a.id} "
            f"({ta.median_ms:.0f} ms); re-run `speedrun calibrate --track {track.name}` with more --runs"
        )
    return Reference(
        source="calibrated",
        hardware=this_machine().describe(),
        from_record=a.id,
        to_record=b.id,
        t_ref_ms=ta.median_ms,
        t_next_ms=tb.median_ms,
        next_ratio=ratio,
        runs=len(ta.times_ms),
        t_ref_spread_ms=ta.spread,
        t_next_spread_ms=tb.spread,
        t_ref_untimed_s=ta.median_untimed_s,
        t_next_untimed_s=tb.median_untimed_s,
        next_ratios=paired_ratios(tb.times_ms, ta.times_ms),
    )


def paper_reference(a: Record, b: Record) -> Reference:
    if a.reference is None or b.reference is None:
        raise ConfigError(
            f"records {a.id} and {b.id} have no paper reference times; drop --references paper to measure them here"
        )
    return Reference(
        source="paper",
        hardware=PAPER_HARDWARE,
        from_record=a.id,
        to_record=b.id,
        t_ref_ms=a.reference.time_ms,
        t_next_ms=b.reference.time_ms,
        next_ratio=b.reference.time_ms / a.reference.time_ms,
    )
