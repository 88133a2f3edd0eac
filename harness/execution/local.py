"""Run a candidate as a subprocess on this machine. Not a sandbox: use `docker` for untrusted code."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from typing import IO

from harness.execution.base import ExecResult, Executor, LineCallback, RunSpec
from harness.execution.environment import candidate_env
from harness.execution.gpus import GpuSpec

#: A run that writes more than this is killed: a flooding script must not fill the disk.
MAX_LOG_BYTES = 64 * 1024 * 1024
#: After SIGTERM, how long a process group gets to exit before SIGKILL.
KILL_GRACE_S = 3.0


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
        start = time.monotonic()
        with open(spec.log_path, "wb") as log:
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
                return ExecResult(
                    exit_code=None,
                    error=f"could not start {spec.command[0]!r}: {exc.strerror}",
                    log_path=spec.log_path,
                    executor=self.name,
                    sandboxed=False,
                )
            assert proc.stdout is not None
            flooded = threading.Event()
            pump = threading.Thread(target=self._pump, args=(proc.stdout, log, on_line, flooded, proc), daemon=True)
            pump.start()
            timed_out = False
            try:
                proc.wait(timeout=spec.time_limit_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
            except BaseException:
                _kill_group(proc)  # Ctrl-C or a crash of the harness must not leave the run behind
                raise
            finally:
                pump.join(timeout=10)
            _kill_group(proc)  # stragglers that detached from the main process
        wall = time.monotonic() - start
        error = f"log exceeded {self.max_log_bytes // 2**20} MiB; run killed" if flooded.is_set() else None
        code = proc.returncode
        return ExecResult(
            exit_code=None if timed_out else code,
            timed_out=timed_out,
            error=error,
            wall_time_s=wall,
            log_path=spec.log_path,
            executor=self.name,
            sandboxed=False,
        )

    def _pump(
        self,
        stream: IO[bytes],
        log: IO[bytes],
        on_line: LineCallback | None,
        flooded: threading.Event,
        proc: subprocess.Popen[bytes],
    ) -> None:
        written = 0
        for raw in iter(stream.readline, b""):
            if flooded.is_set() or written + len(raw) > self.max_log_bytes:
                if not flooded.is_set():
                    flooded.set()
                    log.write(b"\n[speedrun] log limit reached; run killed\n")
                    log.flush()
                    _kill_group(proc)
                continue
            log.write(raw)
            log.flush()
            written += len(raw)
            if on_line is not None:
                on_line(raw.decode("utf-8", errors="replace").rstrip("\n"))


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = proc.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:
            # The leader exited; kill what is left of its group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            return
