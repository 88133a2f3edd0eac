"""Run a candidate on this machine, isolated with bubblewrap by default.

`sandbox=auto` (the default) uses bubblewrap where it works (`harness.execution.bwrap` says
what a run then sees); without it, runs go unisolated, which is refused for model-written code
(`check_untrusted`) unless the user says `--executor-arg sandbox=none`. `sandbox=bwrap`
insists on the sandbox. Either way each run is its own process group and session, killed
whole at the wall-clock limit, with rlimits (address space, processes, file size) and, in the
sandbox, size-limited tmpfs for the workspace, /tmp, /dev/shm and home, and a file-count cap.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.confine import strip_special_bits
from harness.errors import ConfigError
from harness.execution import bwrap
from harness.execution.base import MAX_LOG_BYTES, ExecResult, Executor, LineCallback, LogSink, RunSpec
from harness.execution.environment import candidate_env
from harness.execution.gpus import GpuSpec
from harness.execution.limits import Launch, cpu_list, parse_count, parse_size
from harness.execution.registry import register

#: After SIGTERM, how long a process group gets to exit before SIGKILL.
KILL_GRACE_S = 3.0
#: How long the log may take to drain after the run's process has exited.
DRAIN_S = 10.0
#: How often a sandboxed run's file count is looked at.
WATCH_S = 0.2
SANDBOX_MODES = ("auto", "bwrap", "none")


@register
class LocalExecutor(Executor):
    """Runs each candidate as a local process tree, in a bubblewrap sandbox unless told otherwise.

    Limits (`--executor-arg key=value`): `memory` (address space, e.g. 16g; not applied to
    GPU runs, whose drivers map far more than they use; `none` lifts it), `pids_limit`,
    `file_size` (largest file), `workspace_size`, `workspace_files` (files on the sandbox's
    tmpfs mounts together), `tmpfs_size` (/tmp, /dev/shm and home, each), `cpuset` (pin to
    cores), `ro_paths` (more read-only paths for the sandbox, `:`-separated).
    """

    name = "local"

    def __init__(
        self,
        sandbox: str = "auto",
        *,
        memory: str | int | None = "16g",
        pids_limit: int | str | None = 1024,
        file_size: str | int | None = "4g",
        workspace_size: str | int | None = "1g",
        workspace_files: int | str | None = 10_000,
        tmpfs_size: str | int | None = "1g",
        cpuset: str | int | None = None,
        ro_paths: str = "",
        max_log_bytes: int = MAX_LOG_BYTES,
    ) -> None:
        if sandbox not in SANDBOX_MODES:
            raise ConfigError(f"local sandbox must be one of {', '.join(SANDBOX_MODES)}, got {sandbox!r}")
        self.requested = sandbox
        self.unavailable = bwrap.unavailable() if sandbox != "none" else "not asked for (sandbox=none)"
        if sandbox == "bwrap" and self.unavailable:
            raise ConfigError(f"sandbox=bwrap: {self.unavailable}; install bubblewrap (apt-get install bubblewrap)")
        self.sandboxed = self.unavailable is None
        self.memory = parse_size(memory, "memory")
        self.pids_limit = parse_count(pids_limit, "pids_limit")
        self.file_size = parse_size(file_size, "file_size")
        self.workspace_size = parse_size(workspace_size, "workspace_size")
        self.workspace_files = parse_count(workspace_files, "workspace_files")
        self.tmpfs_size = parse_size(tmpfs_size, "tmpfs_size")
        self.cpuset = None if cpuset is None else str(cpuset)
        if self.cpuset is not None:
            cpu_list(self.cpuset)  # validates
        self.ro_paths = [Path(p) for p in ro_paths.split(":") if p]
        self.max_log_bytes = max_log_bytes

    # -- configuration -----------------------------------------------------------------

    @property
    def calibration_key(self) -> str:
        return self.name + (f"-cpuset{self.cpuset.replace(',', '_')}" if self.cpuset is not None else "")

    @property
    def isolation(self) -> str:
        if self.sandboxed:
            who = "a user of its own" if bwrap.privileged() else "this user in a user namespace"
            return f"bubblewrap ({bwrap.version() or 'bwrap'}): read-only system, no network, own PIDs, as {who}"
        return f"none: runs see this machine as the harness does ({self.unavailable})"

    def check_untrusted(self) -> None:
        if self.sandboxed or self.requested == "none":
            return
        raise ConfigError(
            f"model-written code would run unisolated on this machine: {self.unavailable}. Install bubblewrap "
            "(apt-get install bubblewrap), or use --executor docker, or accept the risk with "
            "--executor-arg sandbox=none"
        )

    def launch(self, spec: RunSpec) -> Launch:
        gpu_run = GpuSpec.parse(spec.gpus) is not None
        return Launch(
            memory=None if gpu_run else self.memory,
            # Unsandboxed, the run is the harness's own user, whose other processes count too.
            pids=self.pids_limit if self.sandboxed else None,
            file_size=self.file_size,
            cpu_s=int(spec.time_limit_s * (os.cpu_count() or 1)) + 60,
            cpuset=self.cpuset,
        )

    def describe(self, spec: RunSpec) -> dict[str, Any]:
        return {
            **super().describe(spec),
            "limits": {
                "memory": self.memory,
                "pids": self.pids_limit,
                "file_size": self.file_size,
                "workspace_size": self.workspace_size if self.sandboxed else None,
                "workspace_files": self.workspace_files if self.sandboxed else None,
                "tmpfs_size": self.tmpfs_size if self.sandboxed else None,
                "cpuset": self.cpuset,
            },
        }

    # -- running ----------------------------------------------------------------------

    def run(self, spec: RunSpec, on_line: LineCallback | None = None) -> ExecResult:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = candidate_env(spec.env)
        gpus = GpuSpec.parse(spec.gpus)
        if gpus is not None and (devices := gpus.visible_devices()):
            env["CUDA_VISIBLE_DEVICES"] = devices  # a run slot's share of the GPUs
        program = spec.command[0]
        if "/" in program and not os.path.isabs(program):
            program = str(spec.workspace / program)
        if shutil.which(program, path=env.get("PATH", os.defpath)) is None:
            # Said here: behind the launcher it would only be an exit status of 127.
            return self._result(spec, exit_code=None, error=f"could not start {program!r}: no such program")
        plan: bwrap.Plan | None = None
        if self.sandboxed:
            plan = bwrap.plan(
                spec.command,
                spec.workspace,
                data_dir=spec.data_dir,
                launch=self.launch(spec),
                workspace_size=self.workspace_size,
                workspace_files=self.workspace_files,
                tmpfs_size=self.tmpfs_size,
                ro_paths=self.ro_paths,
            )
            argv, cwd, fds = plan.argv, None, plan.fds
        else:
            argv, cwd, fds = self.launch(spec).argv(sys.executable, spec.command), spec.workspace, []
        try:
            return self._run(spec, argv, cwd, fds, env, on_line, plan)
        finally:
            if plan is not None:
                plan.release()
            # Whatever the run left must not be a way in for whoever opens the results.
            strip_special_bits(spec.workspace)

    def _run(
        self,
        spec: RunSpec,
        argv: list[str],
        cwd: Path | None,
        fds: list[int],
        env: dict[str, str],
        on_line: LineCallback | None,
        plan: bwrap.Plan | None,
    ) -> ExecResult:
        with open(spec.log_path, "wb") as log:
            start = time.monotonic()
            try:
                # Own session = own process group, so the limit kills grandchildren too.
                proc = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=fds,
                )
            except OSError as exc:
                return self._result(spec, exit_code=None, error=f"could not start {argv[0]!r}: {exc.strerror}")
            finally:
                if plan is not None:
                    plan.close_fds()
            assert proc.stdout is not None
            sink = LogSink(log, on_line, max_bytes=self.max_log_bytes, on_flood=lambda: _kill_group(proc))
            pump = threading.Thread(target=sink.pump_fd, args=(proc.stdout.fileno(),), daemon=True)
            pump.start()
            waiter = _Waiter(proc, start)
            outcome = _Outcome()
            try:
                if plan is None:
                    outcome.timed_out = not waiter.done.wait(timeout=spec.time_limit_s)
                else:
                    self._wait_sandbox(spec, waiter, plan, start, outcome)
                if outcome.timed_out or outcome.error:
                    _kill_group(proc)
                    waiter.done.wait()
            except BaseException:
                _kill_group(proc)  # Ctrl-C or a crash of the harness must not leave the run behind
                raise
            finally:
                if plan is not None:
                    plan.release()  # ends a sandbox held for its outputs
                    waiter.done.wait(timeout=DRAIN_S)
                _kill_group(proc)  # stragglers that detached from the main process
                pump.join(timeout=DRAIN_S)
                proc.stdout.close()
        return self._result(
            spec,
            exit_code=None if outcome.timed_out else proc.returncode,
            timed_out=outcome.timed_out,
            error=sink.flood_error or outcome.error,
            wall_s=outcome.wall_s if outcome.wall_s is not None else waiter.wall_s,
            cpu_s=waiter.cpu_s,
            warnings=sink.warnings,
        )

    def _wait_sandbox(self, spec: RunSpec, waiter: _Waiter, plan: bwrap.Plan, start: float, outcome: _Outcome) -> None:
        """Until the sandbox's PID 1 reports the command's end (everything else in the sandbox
        dead by then), the time is up, or the run makes too many files; then the outputs are
        copied out of the held sandbox. The report's arrival is the end of the run's wall time."""
        deadline = start + spec.time_limit_s
        assert plan.info_fd is not None and plan.done_fd is not None
        child = bwrap.read_child_pid(plan.info_fd, timeout_s=min(10.0, spec.time_limit_s))
        watch = child is not None and bool(plan.watched) and self.workspace_files is not None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                outcome.timed_out = True
                return
            ready, _, _ = select.select([plan.done_fd], [], [], min(WATCH_S, remaining))
            if ready:
                report = os.read(plan.done_fd, 64)
                if report.strip():
                    outcome.wall_s = time.monotonic() - start
                    break
                waiter.done.wait(timeout=DRAIN_S)  # PID 1 died without a report (its setup failed)
                return
            if waiter.done.is_set():
                return
            if watch:
                assert child is not None and self.workspace_files is not None
                used = bwrap.files_in_use(child, plan.watched)
                if used is not None and used > self.workspace_files:
                    outcome.error = f"the run made more than {self.workspace_files} files; run killed"
                    return
        if spec.outputs and child is not None:
            bwrap.fetch_outputs(child, spec.workspace, spec.outputs, spec.workspace)

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


@dataclass
class _Outcome:
    timed_out: bool = False
    error: str | None = None
    #: The harness's clock at the sandbox's report (None: the waiter's, at the process's exit).
    wall_s: float | None = None


class _Waiter:
    """Reaps the run's process in a thread, with its resource usage.

    `wait4` gives the CPU time of the process and of every descendant it (or a reaper under
    it, such as the sandbox's PID 1) waited for: the harness's own measure of the run's work.
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
    """SIGTERM, then SIGKILL, to the run's process group (the group id is the leader's pid).

    In the sandbox the candidate has a session of its own, but it dies with bubblewrap, which
    is the group's leader here."""
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
