"""Many tasks at once: every task's search runs concurrently, sharing the executor's job limit.

On a cluster, running the tasks of a sweep one after another leaves most of the allowed jobs
idle while one task's search thinks. Here each task gets its own engine (its own scaffold and
`--max-parallel` slots, so each search is the one a single evaluation runs), all engines run
at once, and the slurm executor keeps at most `max_jobs` jobs queued or running in total.

Reference times are settled first, one task after another: calibration runs of a record that
two tasks share are measured once, and never by two calibrations at once in one work area.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed

from harness.data.tracks import ensure_data
from harness.eval.config import EvalConfig
from harness.eval.evaluate import Evaluation
from harness.eval.log import RunInfo
from harness.events import Event, EventSink, ignore
from harness.execution.slurm_jobs import JOBS


def tagged(sink: EventSink, task: str) -> EventSink:
    """Events of one task's evaluation, named for it (the sweep interleaves many)."""

    def emit(ev: Event) -> None:
        sink(dataclasses.replace(ev, message=f"[{task}] {ev.message}" if ev.message else ev.message))

    return emit


def settle_references(cfgs: list[EvalConfig], on_event: EventSink = ignore) -> None:
    """Calibrate (or find) each task's reference times, task by task, before any search starts."""
    for cfg in cfgs:
        ev = Evaluation(cfg, tagged(on_event, cfg.task))
        data = ensure_data(ev.track, cfg.data_dir, progress=lambda m: on_event(Event("info", m)))
        executor = ev.executor()
        try:
            ev.reference(executor, ev.measure_spec(data))
        finally:
            executor.close()


def run_sweep(
    cfgs: list[EvalConfig],
    on_event: EventSink = ignore,
    on_done: Callable[[EvalConfig, RunInfo | Exception], None] | None = None,
) -> dict[str, RunInfo | Exception]:
    """Evaluate every config at once; returns each task's RunInfo, or the error that ended it.

    One task's error does not stop the others. Ctrl-C stops them all (the slurm executor
    cancels its jobs), and every run stays resumable.
    """
    settle_references(cfgs, on_event)
    out: dict[str, RunInfo | Exception] = {}
    pool = ThreadPoolExecutor(len(cfgs), thread_name_prefix="task")
    try:
        futures = {pool.submit(Evaluation(cfg, tagged(on_event, cfg.task)).run): cfg for cfg in cfgs}
        for fut in as_completed(futures):
            cfg = futures[fut]
            try:
                result: RunInfo | Exception = fut.result()
            except Exception as exc:
                result = exc
            out[cfg.task] = result
            if on_done is not None:
                on_done(cfg, result)
    except BaseException:
        JOBS.stop()  # every waiting run cancels its job, and its engine stops
        raise
    finally:
        pool.shutdown(wait=True)
        JOBS.resume()
    return {cfg.task: out[cfg.task] for cfg in cfgs if cfg.task in out}
