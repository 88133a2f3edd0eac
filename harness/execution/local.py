"""Run a candidate as a subprocess on this machine. Not a sandbox: use `docker` for untrusted code."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time

from harness.execution.base import MAX_LOG_BYTES, ExecResult, Executor, LineCallback, LogSink, RunSpec
from harness.execution.environment import candidate_env
from harness.execution.gpus import GpuSpec
from harness.execution.registry import register

#: After SIGTERM, how long a process group gets to exit before SIGKILL.
KILL_GRACE_S = 3.0
#: How long the log may take to drain after the run's process has exited.
DRAIN_S = 10.0


@register
class LocalExecutor(Executor):
    name = "local"
    sandboxed = False

    def __init__(self, max_log_bytes: int = MAX_LOG_BYTES) -> None:
        self.max_log_bytes = max_log_bytes

    def run(self, spec: RunSpec, on_line: LineCallback | None = None) -> ExecResult:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = candidate_env(spec.env)
        gpus = GpuSpec.parse(spec.gpus)
        if gpus is not None and (devices := gpus.visible_devices()):
            env["CUDA_VISIBLE_DEVICES"] = devices  # a run slot's share of the GPUs
        with open(spec.log_path, "wb") as log:
            start = time.monotonic()
            try:
                # Own session = own process group, so the limit kills grandchildren too.
                proc = subprocess.Popen(
                    spec.command,
                    cwd=spec.workspace,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                return self._result(spec, exit_code=None, error=f"could not start {spec.command[0]!r}: {exc.strerror}")
            assert proc.stdout is not None
            sink = LogSink(log, on_line, max_bytes=self.max_log_bytes, on_flood=lambda: _kill_group(proc))
            pump = threading.Thread(target=sink.pump_fd, args=(proc.stdout.fileno(),), daemon=True)
            pump.start()
            waiter = _Waiter(proc, start)
            try:
                timed_out = not waiter.done.wait(timeout=spec.time_limit_s)
                if timed_out:
                    _kill_group(proc)
                    waiter.done.wait()
            except BaseException:
                _kill_group(proc)  # Ctrl-C or a crash of the harness must not leave the run behind
                raise
            finally:
                _kill_group(proc)  # stragglers that detached from the main process
                pump.join(timeout=DRAIN_S)
                proc.stdout.close()
        return self._result(
            spec,
            exit_code=None if timed_out else proc.returncode,
            timed_out=timed_out,
            error=sink.flood_error,
            wall_s=waiter.wall_s,
            cpu_s=waiter.cpu_s,
            warnings=sink.warnings,
        )

    def _result(self, spec: RunSpec, *, exit_code: int | None, **fields: object) -> ExecResult:
        return ExecResult.model_validate(
            {
                "exit_code": exit_code,
                "log_path": spec.log_path,
                "executor": self.name,
                "sandboxed": self.sandboxed,
                **fields,
            }
        )


class _Waiter:
    """Reaps the run's process in a thread, with its resource usage.

    `wait4` gives the CPU time of the process and of every descendant it (or a reaper under
    it, such as a sandbox's PID 1) waited for: the harness's own measure of the run's work.
    """

    def __init__(self, proc: subprocess.Popen[bytes], start: float) -> None:
        self.proc = proc
        self.start = start
        self.done = threading.Event()
        self.wall_s = 0.0
        self.cpu_s: float | None = None
        threading.Thread(target=self._wait, daemon=True).start()

    def _wait(self) -> None:
        try:
            _, status, usage = os.wait4(self.proc.pid, 0)
        except ChildProcessError:  # reaped elsewhere; the status is Popen's
            self.proc.wait()
        else:
            self.wall_s = time.monotonic() - self.start
            self.cpu_s = usage.ru_utime + usage.ru_stime
            self.proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if not self.wall_s:
                self.wall_s = time.monotonic() - self.start
            self.done.set()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL, to the run's process group (the group id is the leader's pid)."""
    pgid = proc.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + KILL_GRACE_S
        while proc.returncode is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.returncode is not None:
            # The leader exited; kill what is left of its group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            return
