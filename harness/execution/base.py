"""The executor contract: run one candidate workspace, stream its log, enforce its limits."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field


class RunSpec(BaseModel):
    """Everything an executor needs to run a candidate. Paths are on the harness's machine."""

    command: list[str] = Field(min_length=1)
    workspace: Path
    log_path: Path
    env: dict[str, str] = Field(default_factory=dict)
    time_limit_s: float = Field(gt=0)
    data_dir: Path | None = None
    #: This run's GPUs in `--gpus` spelling: with several run slots, the slot's share only.
    gpus: str | None = None
    #: Which of the concurrent run slots the run holds (0 .. max_parallel-1), where that is known.
    slot: int | None = None
    label: str = ""


class ExecResult(BaseModel):
    """How a run ended. The metrics come from parsing the log, not from here."""

    exit_code: int | None
    timed_out: bool = False
    oom: bool = False
    error: str | None = None
    wall_time_s: float = 0.0
    log_path: Path
    executor: str
    sandboxed: bool

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.oom and self.error is None

    def describe_failure(self) -> str:
        if self.timed_out:
            return "killed: wall-clock limit reached"
        if self.oom:
            return "killed: out of memory"
        if self.error:
            return self.error
        if self.exit_code not in (0, None):
            return f"exited with status {self.exit_code}"
        return ""


LineCallback = Callable[[str], None]


class Executor(ABC):
    """Runs candidates. Implementations must be safe to call from several threads at once."""

    name: ClassVar[str]
    sandboxed: ClassVar[bool]

    @property
    def calibration_key(self) -> str:
        """The name under which reference times measured with this executor are cached.

        Settings that change how fast a run goes (the cores a container may use) are part of
        it: a time measured on one pinned core is no reference for a run on four.
        """
        return self.name

    @abstractmethod
    def run(self, spec: RunSpec, on_line: LineCallback | None = None) -> ExecResult:
        """Run `spec.command` in `spec.workspace`, writing stdout+stderr to `spec.log_path`."""

    def describe(self, spec: RunSpec) -> dict[str, Any]:
        """What `run` would do, for `--dry-run` and for `run.json`."""
        return {
            "executor": self.name,
            "sandboxed": self.sandboxed,
            "command": spec.command,
            "workspace": str(spec.workspace),
            "env": spec.env,
            "time_limit_s": spec.time_limit_s,
        }

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (containers, clients). Called once when the evaluation ends."""
