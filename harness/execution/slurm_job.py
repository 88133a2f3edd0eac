"""What runs inside a candidate's Slurm job: the local executor's code path, its outcome as JSON,
and the requeue on preemption."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from harness.execution.base import ExecResult, RunSpec
from harness.execution.local import LocalExecutor


class JobOutcome(BaseModel):
    """What a job writes for the harness: JSON, so a forged file cannot run code when read."""

    schema_version: int = 1
    attempt: str
    job_id: str | None = None
    hostname: str = ""
    started_at: float = 0.0
    result: ExecResult


class _Terminated(Exception):
    """The job was told to stop (scancel, preemption): its run's end says nothing of the candidate."""


class CandidateJob:
    """The function a job runs (pickled by submitit): the local executor's run of the candidate.

    `checkpoint` makes submitit requeue a job that receives its preemption signal; the requeued
    job runs the candidate again from its start.
    """

    def __call__(self, spec: RunSpec, outcome_path: Path, attempt: str, wrap: list[str]) -> None:
        started = time.time()
        terminated = threading.Event()
        previous = signal.getsignal(signal.SIGTERM)

        def on_term(signum: int, frame: Any) -> None:
            terminated.set()
            if callable(previous):
                previous(signum, frame)

        signal.signal(signal.SIGTERM, on_term)
        env = dict(spec.env)
        if wrap:
            # `srun --container...` needs to know the job it is a step of.
            env.update({k: v for k, v in os.environ.items() if k.startswith("SLURM_")})
        # Slurm picked this job's GPUs and set CUDA_VISIBLE_DEVICES: device ids named on the
        # login node mean nothing here.
        local = spec.model_copy(update={"command": [*wrap, *spec.command], "env": env, "gpus": None})
        if wrap:
            # The OCI container is the candidate's sandbox; srun itself needs the node's Slurm
            # configuration and munge socket, which a bubblewrap sandbox around it would hide.
            result = LocalExecutor(sandbox="none").run(local)
            result = result.model_copy(update={"sandboxed": True})
        else:
            result = LocalExecutor().run(local)
        if terminated.is_set():
            raise _Terminated("the job was told to stop while the candidate ran")
        outcome = JobOutcome(
            attempt=attempt,
            job_id=os.environ.get("SLURM_JOB_ID"),
            hostname=os.uname().nodename,
            started_at=started,
            result=result,
        )
        tmp = outcome_path.with_suffix(".tmp")
        tmp.write_text(outcome.model_dump_json())
        tmp.replace(outcome_path)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def probe_machine(out_path: Path) -> None:
    """A job that says which machine runs the jobs (for the calibration's fingerprint)."""
    from harness.machine import this_machine

    out_path.write_text(this_machine().model_dump_json())


def run_harness(argv: list[str]) -> int:
    """`speedrun eval --submit`: the harness itself as a job; its output goes to the job's log."""
    import subprocess

    code = subprocess.call([sys.executable, "-c", "from harness.cli.app import app; app()", *argv])
    if code not in (0, 3):  # 3: stopped by a budget, which a re-run resumes
        raise RuntimeError(f"speedrun eval exited with status {code}")
    return code


# ---- the record of a run's jobs ---------------------------------------------------------------
