"""Timing a script to the target: one run through an executor, read by the parser, and
re-run (a bounded number of times) when the machine was too busy for its time to mean much."""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import BaseModel

from harness.audit import Finding
from harness.errors import MachineBusy
from harness.eval.evaluator import ModelEval
from harness.eval.model_check import ModelCheck, check_saved_model
from harness.events import Event, EventSink, ignore
from harness.execution.base import ExecResult, Executor, RunSpec
from harness.logparse import ParsedLog, parse_log_file
from harness.outcome import ClockCheck, RunResult, judge
from harness.search.workspace import write_files

#: A one-thread run whose CPU time is below this share of its wall time spent the rest waiting
#: for a core: quiet, a one-thread mini run uses 95-100% of its wall time.
STARVED_CPU_SHARE = 0.8
#: Runs again of a starved run before the measurement gives up.
MAX_REMEASURE = 2
BUSY_ADVICE = "stop other work on this machine, or pin runs: --executor docker --executor-arg cpuset=N"


class MeasureSpec(BaseModel):
    """How to run a script of a track: what `Engine` uses for candidates, for references too."""

    command: list[str]
    env: dict[str, str]
    time_limit_s: float
    target_val_loss: float
    data_dir: Path | None = None
    gpus: str | None = None
    #: Threads per run on a CPU track (OMP_NUM_THREADS), for telling a starved run.
    threads: int | None = None
    #: Tracks whose runs save a model: what the harness evaluates it on.
    model_check: ModelCheck | None = None


def measure(
    files: dict[str, str],
    workdir: Path,
    spec: MeasureSpec,
    executor: Executor,
    label: str = "",
    *,
    findings: list[Finding] | None = None,
    clock: ClockCheck | None = None,
) -> RunResult:
    """Run `files` once in a fresh `workdir` and judge the log against the target (a candidate's
    with its audit findings and record i's clock; a record's own reference runs without)."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workspace = workdir / "workspace"
    write_files(workspace, files)
    run = executor.run(
        RunSpec(
            command=spec.command,
            workspace=workspace,
            log_path=workdir / "run.log",
            env=spec.env,
            time_limit_s=spec.time_limit_s,
            data_dir=spec.data_dir,
            gpus=spec.gpus,
            label=label,
            # A sandboxed workspace vanishes with the run: the saved model is copied out.
            outputs=[spec.model_check.model_file] if spec.model_check else [],
        )
    )
    parsed = parse_log_file(run.log_path)
    model_eval = saved_model_eval(workspace, parsed, run, spec.target_val_loss, spec.model_check)
    return judge(
        parsed,
        run,
        spec.target_val_loss,
        findings,
        clock,
        model_eval=model_eval,
        model_required=spec.model_check is not None,
    )


def saved_model_eval(
    workspace: Path, parsed: ParsedLog, run: ExecResult, target: float, check: ModelCheck | None
) -> ModelEval | None:
    """The harness's evaluation of the run's model, when the track has one and the run claims the
    target (a run that does not is judged on its own word: it gains nothing by lying upwards)."""
    if check is None or not run.ok or parsed.val_loss is None or not parsed.val_loss <= target:
        return None
    return check_saved_model(workspace, check)


def disturbance(result: RunResult, threads: int | None) -> str | None:
    """Why a run's time says more about the machine than about the script, or None."""
    if threads != 1 or result.cpu_s is None or result.wall_time_s <= 0:
        return None
    share = result.cpu_s / result.wall_time_s
    if share < STARVED_CPU_SHARE:
        return f"it had the CPU {share:.0%} of its {result.wall_time_s:.1f} s"
    return None


def measure_steady(
    files: dict[str, str],
    workdir: Path,
    spec: MeasureSpec,
    executor: Executor,
    label: str,
    *,
    findings: list[Finding] | None = None,
    clock: ClockCheck | None = None,
    emit: EventSink = ignore,
) -> RunResult:
    """`measure`, repeated while the run was starved of CPU; `MachineBusy` when it stays so."""
    seen = []
    for attempt in range(MAX_REMEASURE + 1):
        result = measure(files, workdir, spec, executor, label, findings=findings, clock=clock)
        why = disturbance(result, spec.threads)
        if why is None:
            return result
        seen.append(f"{result.wall_time_s:.1f} s")
        if attempt < MAX_REMEASURE:
            emit(Event("warning", f"{label}: the machine was busy ({why}); measuring again"))
    raise MachineBusy(
        f"the machine is too busy to time runs: {label} took {', '.join(seen)} with too little CPU "
        f"({why}); {BUSY_ADVICE}"
    )
