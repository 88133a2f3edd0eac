"""The executor contract: run one candidate workspace, stream its log, enforce its limits.

Every executor copies a run's output through one `LogSink`: the log file is capped, lines
are split in linear time and cut (never buffered whole) when a run prints megabytes without
a newline, and a line callback that raises is a warning, never the end of the reader or of
the run. Each executor also measures the run itself (`ExecResult.wall_s`, `cpu_s`): what a
candidate prints about its own time is a claim, what the harness measures is a fact.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, ClassVar

from pydantic import BaseModel, Field, field_validator

from harness.confine import relpath_problem

#: A run that writes more than this is killed: a flooding script must not fill the disk.
MAX_LOG_BYTES = 64 * 1024 * 1024
#: The longest line handed to a line callback; the rest of a longer line is dropped from the
#: callback (the log file keeps it, up to its cap). The parser reads lines far shorter.
MAX_LINE_BYTES = 64 * 1024
#: How much output is read from a run at a time.
READ_CHUNK = 64 * 1024
#: Written into the log where the cap cut it; the run's `error` is the authority, not this line.
FLOOD_MARK = b"\n[speedrun] log limit reached; run killed\n"
#: Declared outputs of a run: how many, and how large each may be (a saved model).
MAX_OUTPUTS = 16
MAX_OUTPUT_BYTES = 256 * 2**20


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
    #: Files the run is expected to write in its workspace (relative names, such as the saved
    #: model): a sandboxed run's workspace vanishes with it, so the executor copies these out
    #: into `workspace` on the harness's side (regular files only, not through a link, at most
    #: `MAX_OUTPUT_BYTES` each). Nothing else the run writes comes back.
    outputs: list[str] = Field(default_factory=list, max_length=MAX_OUTPUTS)

    @field_validator("outputs")
    @classmethod
    def _confined(cls, names: list[str]) -> list[str]:
        for name in names:
            if problem := relpath_problem(name):
                raise ValueError(f"output {name!r}: {problem}")
        return names


class ExecResult(BaseModel):
    """How a run ended. The metrics come from parsing the log, not from here.

    `wall_s` is the harness's own clock from the start of the run's process (or container)
    to its exit; `cpu_s` the CPU time the run used, with its descendants, where the executor
    can see it (None where it cannot). Neither comes from anything the candidate printed.
    """

    exit_code: int | None
    timed_out: bool = False
    oom: bool = False
    error: str | None = None
    wall_s: float = 0.0
    cpu_s: float | None = None
    log_path: Path
    executor: str
    sandboxed: bool
    #: Faults that did not end the run (a line callback that raised), for the caller to show.
    warnings: list[str] = Field(default_factory=list)

    @property
    def wall_time_s(self) -> float:
        """The former name of `wall_s`."""
        return self.wall_s

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


class LogSink:
    """A run's output on its way to the log file and, line by line, to a callback.

    `feed` takes chunks as they come (any size, split anywhere) and does work linear in
    their length: only the new chunk is searched for newlines, and a partial line is kept
    only up to `max_line_bytes`. Past `max_bytes` the output is dropped, `flooded` is set
    and `on_flood` is called once (to kill the run). A callback that raises is reported in
    `warnings` and called again for later lines: one bad line must not blind the display.
    """

    def __init__(
        self,
        log: IO[bytes],
        on_line: LineCallback | None = None,
        *,
        max_bytes: int = MAX_LOG_BYTES,
        max_line_bytes: int = MAX_LINE_BYTES,
        on_flood: Callable[[], None] | None = None,
    ) -> None:
        self.log = log
        self.on_line = on_line
        self.max_bytes = max_bytes
        self.max_line_bytes = max_line_bytes
        self.on_flood = on_flood
        self.written = 0
        self.flooded = threading.Event()
        self.warnings: list[str] = []
        self._callback_failures = 0
        self._pending = bytearray()
        self._cut = False

    def feed(self, chunk: bytes) -> None:
        if not chunk or self.flooded.is_set():
            return
        if self.written + len(chunk) > self.max_bytes:
            room = self.max_bytes - self.written
            self._write(chunk[:room])
            self.log.write(FLOOD_MARK)
            self.log.flush()
            self.flooded.set()
            if self.on_flood is not None:
                self.on_flood()
            return
        self._write(chunk)

    def _write(self, chunk: bytes) -> None:
        self.log.write(chunk)
        self.log.flush()
        self.written += len(chunk)
        if self.on_line is None:
            return
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            self._extend(chunk[start:end])
            self._deliver()
            start = end + 1
        self._extend(chunk[start:])

    def _extend(self, part: bytes) -> None:
        room = self.max_line_bytes - len(self._pending)
        if len(part) > room:
            part = part[: max(room, 0)]
            self._cut = True
        self._pending += part

    def _deliver(self) -> None:
        line = self._pending.decode("utf-8", errors="replace").rstrip("\r")
        if self._cut:
            line += " [... line cut]"
        self._pending = bytearray()
        self._cut = False
        assert self.on_line is not None
        try:
            self.on_line(line)
        except Exception as exc:  # the caller's fault, not the run's: it goes on
            self._callback_failures += 1
            if self._callback_failures == 1:
                self.warnings.append(f"the log line callback failed ({type(exc).__name__}: {exc}); the run went on")

    def finish(self) -> None:
        """Hand over a last line that had no newline."""
        if self.on_line is not None and (self._pending or self._cut) and not self.flooded.is_set():
            self._deliver()
        if self._callback_failures > 1:
            self.warnings.append(f"the log line callback failed {self._callback_failures} times in all")

    def pump_fd(self, fd: int) -> None:
        """Read `fd` to its end in bounded chunks (never `readline`, which buffers a whole line)."""
        try:
            while chunk := os.read(fd, READ_CHUNK):
                self.feed(chunk)
        except OSError:
            pass  # the pipe broke under us (the run was killed); what came is kept
        self.finish()

    @property
    def flood_error(self) -> str | None:
        return f"log exceeded {self.max_bytes // 2**20} MiB; run killed" if self.flooded.is_set() else None


class Executor(ABC):
    """Runs candidates. Implementations must be safe to call from several threads at once.

    Register an implementation with `harness.execution.register` (its `name` is the
    `--executor` value), or from another package under the `speedrun.executors` entry point.
    """

    name: ClassVar[str]
    #: Whether a run is isolated from this machine (its files, network, processes, keys).
    sandboxed: bool = False

    @property
    def calibration_key(self) -> str:
        """The name under which reference times measured with this executor are cached.

        Settings that change how fast a run goes (the cores a container may use) are part of
        it: a time measured on one pinned core is no reference for a run on four.
        """
        return self.name

    @property
    def isolation(self) -> str:
        """How runs are isolated, in a few words, for `speedrun doctor` and run.json."""
        return "sandboxed" if self.sandboxed else "none: runs see this machine as the harness does"

    def check_untrusted(self) -> None:  # noqa: B027 - optional hook
        """Raise ConfigError if this executor must not run model-written code as configured.

        Called before an evaluation whose model writes code (not the offline oracle/null).
        """

    @abstractmethod
    def run(self, spec: RunSpec, on_line: LineCallback | None = None) -> ExecResult:
        """Run `spec.command` in `spec.workspace`, writing stdout+stderr to `spec.log_path`."""

    def describe(self, spec: RunSpec) -> dict[str, Any]:
        """What `run` would do, for `--dry-run` and for `run.json`."""
        return {
            "executor": self.name,
            "sandboxed": self.sandboxed,
            "isolation": self.isolation,
            "command": spec.command,
            "workspace": str(spec.workspace),
            "env": spec.env,
            "time_limit_s": spec.time_limit_s,
        }

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (containers, clients). Called once when the evaluation ends."""
