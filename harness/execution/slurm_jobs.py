"""What the harness keeps of the Slurm jobs it submits: `jobs.json` (every attempt of a run,
with its queue and run times) and the process-wide cap on jobs in flight (`--max-jobs`),
which also cancels every waiting run when the harness stops.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from harness.fsutil import write_text_atomic


class JobAttempt(BaseModel):
    job_id: str
    attempt: str
    submitted_at: float
    started_at: float | None = None
    ended_at: float | None = None
    state: str = "PENDING"
    hostname: str = ""

    @property
    def queued_s(self) -> float | None:
        """Submission to start: the scheduler's and the job's start-up overhead."""
        return None if self.started_at is None else self.started_at - self.submitted_at


class JobsRecord(BaseModel):
    """`jobs.json` in a run's submitit folder: every job submitted for the run, in order."""

    schema_version: int = 1
    label: str = ""
    jobs: list[JobAttempt] = Field(default_factory=list)

    def save(self, path: Path) -> None:
        write_text_atomic(path, self.model_dump_json(indent=2))


def read_jobs(folder: Path) -> JobsRecord | None:
    path = folder / "jobs.json"
    return JobsRecord.model_validate_json(path.read_text()) if path.is_file() else None


class _JobLimit:
    """At most `limit` jobs in flight in this process, whatever evaluation submits them."""

    def __init__(self) -> None:
        self.limit: int | None = None
        self.in_flight = 0
        self._cond = threading.Condition()
        self.stopping = threading.Event()

    def stop(self) -> None:
        """Make every run that waits for a job (or for a slot) cancel it and raise KeyboardInterrupt."""
        with self._cond:
            self.stopping.set()
            self._cond.notify_all()

    def resume(self) -> None:
        self.stopping.clear()

    def check(self) -> None:
        if self.stopping.is_set():
            raise KeyboardInterrupt("the harness is stopping")

    def set(self, limit: int | None) -> None:
        with self._cond:
            self.limit = limit
            self._cond.notify_all()

    @contextlib.contextmanager
    def slot(self) -> Any:
        with self._cond:
            while self.limit is not None and self.in_flight >= self.limit and not self.stopping.is_set():
                self._cond.wait()
            self.check()
            self.in_flight += 1
        try:
            yield
        finally:
            with self._cond:
                self.in_flight -= 1
                self._cond.notify_all()


JOBS = _JobLimit()
