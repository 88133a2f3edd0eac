"""The best node re-run side by side with record i (A B A B ...), kept in confirm.json so a
resumed evaluation continues the pairs instead of starting them again.

With record i+1 given, every round runs it too (record i, then record i+1 and the node in
alternating order): the score divides the node's speed-up by record i+1's, and on a small
speed-up a few per cent of noise in that denominator moves the FSR by a whole point, so it is
measured in the same minutes as the numerator instead of coming from the calibration."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.audit import audit
from harness.errors import ConfigError
from harness.eval.log import Confirmation
from harness.eval.measure import MeasureSpec, measure_steady
from harness.eval.model_check import ModelCheck, check_saved_model
from harness.events import Event, EventSink
from harness.execution.base import Executor
from harness.fsutil import write_text_atomic
from harness.outcome import ClockCheck, RunResult

CONFIRM_JSON = "confirm.json"


def _holdout(workspace: Path, check: ModelCheck) -> float | None:
    result = check_saved_model(workspace, check, holdout=True)
    return result.loss if result.ok else None


def confirm(
    run_dir: Path,
    node_id: int,
    candidate: dict[str, str],
    record: dict[str, str],
    record_id: str,
    main_file: str,
    *,
    runs: int,
    executor: Executor,
    spec: MeasureSpec,
    emit: EventSink,
    seeds: list[int] | None = None,
    enough: Callable[[Confirmation], bool] | None = None,
    next_record: tuple[str, dict[str, str]] | None = None,
    next_untimed_s: float | None = None,
) -> Confirmation:
    """Pairs of (record i, candidate) runs, at most `runs` (and at least one per seed), stopping
    early once `enough(conf)` says the pairs pin the score down; record i must reach the target.
    Pair k runs both scripts with seed `seeds[k % len(seeds)]`. `next_record` (its id and files)
    adds record i+1 to every pair, which must reach the target as well; `next_untimed_s`, its
    untimed share from the calibration, stands in for it before it has run in this confirmation."""
    seeds = seeds or [int(spec.env.get("SPEEDRUN_SEED", "0"))]
    runs = max(runs, len(seeds))
    findings = audit(candidate.get(main_file, ""), baseline=record.get(main_file))
    path = run_dir / CONFIRM_JSON
    conf = Confirmation(node=node_id)
    next_id = next_record[0] if next_record else None
    if path.is_file():
        old = Confirmation.model_validate_json(path.read_text())
        # Rounds kept from a confirmation without record i+1 (or with another) cannot be
        # completed to three-way rounds: they are measured again.
        if (
            old.node == node_id
            and old.next_record == next_id
            and len(old.next_ms) == (len(old.candidate_ms) if next_id else 0)
        ):
            conf = old
    conf.next_record = next_id
    while len(conf.candidate_ms) < runs and not (len(conf.candidate_ms) >= len(seeds) and enough and enough(conf)):
        k = len(conf.candidate_ms)
        seed = seeds[k % len(seeds)]
        pair_spec = spec.model_copy(update={"env": {**spec.env, "SPEEDRUN_SEED": str(seed)}})
        against = f"{record_id} and {next_id}" if next_id else record_id
        emit(Event("phase", f"confirming node {node_id} against {against} (pair {k + 1}/{runs})"))
        ref_dir = run_dir / "confirm" / f"{k}-reference"
        r, ref_ms = _run_record(record_id, record, ref_dir, pair_spec, executor, emit)
        # Record i+1 runs before the node in even rounds and after it in odd ones, so that a drift
        # within a round favours neither.
        next_ms: float | None = None
        next_untimed: float | None = None
        next_dir = run_dir / "confirm" / f"{k}-next"
        if next_record is not None and k % 2 == 0:
            n, next_ms = _run_record(*next_record, next_dir, pair_spec, executor, emit)
            next_untimed = n.untimed_s
        # The candidate is held to the record runs beside it: same machine, same minute (record
        # i+1's from this round where it ran first, else the round before, else the calibration).
        latest = next((u for u in [next_untimed, *reversed(conf.next_untimed_s)] if u is not None), next_untimed_s)
        clock = ClockCheck.for_task(r.untimed_s, latest if next_record else None, spec.threads)
        c = measure_steady(
            candidate,
            run_dir / "confirm" / f"{k}-candidate",
            pair_spec,
            executor,
            f"node {node_id}",
            findings=findings,
            clock=clock,
            emit=emit,
        )
        if next_record is not None and k % 2 == 1:
            n, next_ms = _run_record(*next_record, next_dir, pair_spec, executor, emit)
            next_untimed = n.untimed_s
        conf.reference_ms.append(ref_ms)
        if next_ms is not None:
            conf.next_ms.append(next_ms)
            conf.next_untimed_s.append(next_untimed)
        conf.candidate_ms.append(c.time_ms if c.valid and c.time_ms else float("inf"))
        conf.candidate_valid.append(c.valid)
        conf.seeds.append(seed)
        measured = c.model_eval.loss if c.model_eval is not None else None
        conf.candidate_val_loss.append(measured if measured is not None else c.val_loss)
        conf.candidate_errors.append("" if c.valid else "; ".join([*c.rule_violations, c.error or ""]).strip("; "))
        if spec.model_check is not None and spec.model_check.holdout_glob:
            conf.reference_holdout.append(_holdout(ref_dir / "workspace", spec.model_check))
            conf.candidate_holdout.append(
                _holdout(run_dir / "confirm" / f"{k}-candidate" / "workspace", spec.model_check)
            )
        write_text_atomic(path, conf.model_dump_json(indent=2))
        nxt = f", record {next_id} {next_ms / 1000:.1f} s" if next_ms is not None else ""
        emit(
            Event(
                "info",
                f"pair {k + 1}: record {record_id} {ref_ms / 1000:.1f} s{nxt}, "
                f"node {node_id} {(c.time_ms or 0) / 1000:.1f} s",
            )
        )
    return conf


def _run_record(
    record_id: str, files: dict[str, str], out: Path, spec: MeasureSpec, executor: Executor, emit: EventSink
) -> tuple[RunResult, float]:
    """A record's run of a round (record i's or i+1's), which must reach the target, and its time."""
    run = measure_steady(files, out, spec, executor, f"record {record_id}", emit=emit)
    if not run.valid or run.train_time_ms is None:
        raise ConfigError(
            f"record {record_id} did not reach the target in a confirmation run: {run.error or run.val_loss}"
        )
    return run, run.train_time_ms
