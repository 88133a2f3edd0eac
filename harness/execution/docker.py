"""Run a candidate in a locked-down container: the executor for code an LLM wrote.

One container per run, created from the track's image through the docker SDK:
no network, no capabilities, no privilege escalation, a seccomp profile that also
denies ptrace and io_uring (`seccomp.py`), a non-root user, a read-only root
filesystem with only the workspace and `/tmp` writable, both size- and
file-count-limited tmpfs, and the data (ro) mounted, and memory, pids, CPU and shm
limits. The workspace tmpfs is filled from the node's files (mounted read-only
beside it), so nothing the run writes reaches the host. The log is streamed to
`spec.log_path` as it is written; the container is killed at the wall-clock limit
and removed once its log and exit state are saved, whatever happens to the
harness meanwhile (`prune` removes leftovers of a hard crash).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.execution import seccomp
from harness.execution.base import MAX_LOG_BYTES, ExecResult, Executor, LineCallback, LogSink, RunSpec
from harness.execution.docker_clock import CpuProbe, engine_errors, engine_wall_s
from harness.execution.docker_container import (
    LABEL,
    RUN_LABEL,
    attach,
    container_name,
    fetch_outputs,
    kill,
    make_writable_for,
    prune_containers,
    pump_frames,
    wait_exit,
    wait_held,
)
from harness.execution.environment import THREAD_VARS, candidate_env
from harness.execution.gpus import GpuSpec
from harness.execution.limits import Launch
from harness.execution.registry import register

#: Where the run sees its workspace and its data, and where the node's files are mounted from.
WORKSPACE = "/workspace"
DATA = "/data"
SOURCE = "/speedrun/code"
#: An orphaned run (its harness gone) kills itself this long after its wall-clock limit.
ORPHAN_GRACE_S = 60.0
#: How long to wait for the log stream to drain after the container has stopped.
DRAIN_S = 10.0
#: How long a finished run's container is held for its outputs to be copied out.
HOLD_S = 600


@register
class DockerExecutor(Executor):
    """Runs each candidate in its own container; defaults fit the mini track on a laptop.

    `gpus` follows `docker run --gpus`: `all`, a count (`2`), or device ids
    (`device=0,1` or `0,1`); a run's `spec.gpus` overrides it. `user` is the
    container's `uid:gid`; the workspace is made writable for it before the run.
    """

    name = "docker"
    sandboxed = True

    def __init__(
        self,
        image: str,
        *,
        memory: str = "8g",
        cpus: float | None = None,
        cpuset: str | int | None = None,
        pids_limit: int = 1024,
        shm_size: str = "1g",
        tmpfs_size: str = "1g",
        workspace_size: str = "1g",
        workspace_files: int = 10_000,
        gpus: str | None = None,
        user: str = "1000:1000",
        docker_host: str | None = None,
        max_log_bytes: int = MAX_LOG_BYTES,
    ) -> None:
        if not re.fullmatch(r"\d+:\d+", user):
            raise ConfigError(f"docker user must be numeric uid:gid (like 1000:1000), got {user!r}")
        self.image = image
        self.memory = memory
        try:
            self.cpus = None if cpus is None else float(cpus)
        except (TypeError, ValueError):
            raise ConfigError(f"docker cpus must be a number of cores (like 2 or 1.5), got {cpus!r}") from None
        if self.cpus is not None and self.cpus <= 0:
            raise ConfigError(f"docker cpus must be positive, got {cpus!r}")
        # Pinning, like `taskset` for the local executor: timings of a CPU track compare only
        # between runs with the same cores (calibration and candidates), and parallel runs
        # on one host must not share a core.
        self.cpuset = None if cpuset is None else str(cpuset)
        if self.cpuset is not None and not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", self.cpuset):
            raise ConfigError(f"docker cpuset must list cores like 0 or 0-3 or 0,2, got {self.cpuset!r}")
        self.pids_limit = pids_limit
        self.shm_size = shm_size
        self.tmpfs_size = tmpfs_size
        self.workspace_size = workspace_size
        try:
            self.workspace_files = int(workspace_files)
        except (TypeError, ValueError):
            raise ConfigError(f"docker workspace_files must be a number of files, got {workspace_files!r}") from None
        self.gpus = gpus
        self.user = user
        self.docker_host = docker_host
        self.max_log_bytes = max_log_bytes
        self.orphan_grace_s = ORPHAN_GRACE_S
        self._client: Any = None
        self._client_lock = threading.Lock()

    # -- configuration -----------------------------------------------------------------

    @property
    def calibration_key(self) -> str:
        key = self.name
        if self.cpuset is not None:
            key += f"-cpuset{self.cpuset.replace(',', '_')}"
        if self.cpus is not None:
            key += f"-cpus{self.cpus:g}"
        return key

    def container_config(self, spec: RunSpec) -> dict[str, Any]:
        """Keyword arguments for `containers.create`: plain data, also what `describe` shows."""
        workspace = spec.workspace.resolve()
        uid, gid = self.user.split(":")
        volumes: dict[str, dict[str, str]] = {str(workspace): {"bind": SOURCE, "mode": "ro"}}
        if spec.data_dir is not None:
            volumes[str(spec.data_dir.resolve())] = {"bind": DATA, "mode": "ro"}
        config: dict[str, Any] = {
            "image": self.image,
            "command": self.container_command(spec),
            "environment": self.container_env(spec),
            "working_dir": WORKSPACE,
            "user": self.user,
            "labels": {LABEL: "1", RUN_LABEL: spec.label},
            "volumes": volumes,
            "tmpfs": {
                "/tmp": f"rw,nosuid,nodev,size={self.tmpfs_size},nr_inodes={self.workspace_files},mode=1777",
                WORKSPACE: (
                    f"rw,nosuid,nodev,exec,size={self.workspace_size},nr_inodes={self.workspace_files},"
                    f"uid={uid},gid={gid},mode=0755"
                ),
            },
            "read_only": True,
            "network_mode": "none",
            # Without a network the container's random hostname resolves to nothing, and
            # `torchrun --standalone` (the nanogpt track) waits forever to rendezvous on it.
            "hostname": "localhost",
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges", seccomp.docker_security_opt()],
            "mem_limit": self.memory,
            # Equal to the memory limit: no swap, so a hog meets the OOM killer instead of thrashing.
            "memswap_limit": self.memory,
            "pids_limit": self.pids_limit,
            "shm_size": self.shm_size,
            # The engine keeps its own copy of the log; bound it like ours.
            "log_config": {"type": "json-file", "config": {"max-size": str(self.max_log_bytes), "max-file": "2"}},
        }
        if self.cpus is not None:
            config["nano_cpus"] = int(self.cpus * 1e9)
        if self.cpuset is not None:
            config["cpuset_cpus"] = self.cpuset
        if requests := device_requests(spec.gpus or self.gpus):
            config["device_requests"] = requests
        return config

    def container_command(self, spec: RunSpec) -> list[str]:
        """`spec.command` behind the harness's launcher (`limits.py`), the container's PID 1.

        It copies the node's files into the workspace tmpfs, joins stderr to stdout (one pipe
        keeps the order lines were written in), and reaps. It carries the run's own deadline, a
        little after the harness's: if the harness dies without a chance to clean up (SIGKILL,
        a lost node), the orphaned run still stops, and `prune` finds it stopped, not holding
        GPUs. A run with declared outputs is held once its command has ended: everything else
        killed, the output closed, the workspace kept until the harness has copied them out.
        """
        launch = Launch(
            reaper=True,
            seed=(SOURCE, WORKSPACE),
            merge_stderr=True,
            backstop_s=math.ceil(spec.time_limit_s + self.orphan_grace_s),
            hold_s=HOLD_S if spec.outputs else None,
            close_output=bool(spec.outputs),
        )
        return launch.argv("python", spec.command)

    def container_env(self, spec: RunSpec) -> dict[str, str]:
        """The documented variables only, with host paths rewritten to where the container sees them."""
        env = candidate_env(spec.env, inherit=False)
        # A run inside must use the thread count its reference times were measured with.
        for name in THREAD_VARS:
            if name in os.environ and name not in env:
                env[name] = os.environ[name]
        moves: list[tuple[Path, str]] = [(spec.workspace, WORKSPACE)]
        if spec.data_dir is not None:
            moves.insert(0, (spec.data_dir, DATA))
        for host, inside in moves:
            for form in {str(host), str(host.resolve())}:
                # Only whole path components: /data/mini must not rewrite /data/mini2.
                pattern = re.compile(re.escape(form.rstrip("/")) + r"(?=/|$|[\s:,;])")
                env = {k: pattern.sub(inside, v) for k, v in env.items()}
        # The image's account has its home on /tmp, but a tool that reads HOME from the
        # environment (pip, torch hub) must not try the read-only root.
        env.setdefault("HOME", "/tmp")
        return env

    def describe(self, spec: RunSpec) -> dict[str, Any]:
        config = self.container_config(spec)
        return {
            "executor": self.name,
            "sandboxed": self.sandboxed,
            "time_limit_s": spec.time_limit_s,
            "max_log_bytes": self.max_log_bytes,
            **{k: v for k, v in config.items() if k != "log_config"},
        }

    # -- running ----------------------------------------------------------------------

    def client(self) -> Any:
        """The executor's docker client, made on first use (one per executor, shared by threads)."""
        with self._client_lock:
            if self._client is None:
                from harness.execution.images import docker_client

                self._client = docker_client(self.docker_host)
            return self._client

    def run(self, spec: RunSpec, on_line: LineCallback | None = None) -> ExecResult:
        import docker

        client = self.client()
        config = self.container_config(spec)
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        make_writable_for(spec.workspace, self.user)
        try:
            container = client.containers.create(name=container_name(spec.label), **config)
        except docker.errors.ImageNotFound:
            raise ConfigError(
                f"image {self.image} not found; build it with `speedrun containers build` "
                "(`speedrun doctor` lists the images)"
            ) from None
        except docker.errors.APIError as exc:
            return self._result(spec, exit_code=None, error=f"could not create the container: {exc.explanation}")
        try:
            return self._run_container(container, spec, on_line)
        finally:
            # Also on Ctrl-C and on errors: nothing of the run may outlive it.
            with contextlib.suppress(*engine_errors()):
                container.remove(force=True)

    def _run_container(self, container: Any, spec: RunSpec, on_line: LineCallback | None) -> ExecResult:
        import docker

        # Attached before the start, like `docker run`: following the engine's log file
        # instead (`logs(follow=True)`) was seen to end before the last lines arrived.
        output = attach(container)
        try:
            with open(spec.log_path, "wb") as log:
                sink = LogSink(log, on_line, max_bytes=self.max_log_bytes)
                try:
                    container.start()
                except docker.errors.APIError as exc:
                    reason = f"could not start the container: {exc.explanation}"
                    return self._result(spec, exit_code=None, error=reason)
                start = time.monotonic()
                deadline = start + spec.time_limit_s
                frames = (data for _, data in docker.utils.socket.frames_iter(output, tty=False))
                pump = threading.Thread(target=pump_frames, args=(frames, sink), daemon=True)
                pump.start()
                cpu = CpuProbe(container)
                try:
                    held = wait_held(container, pump, sink, deadline, cpu) if spec.outputs else False
                    if held:
                        # The command has ended and nothing else runs (to within a poll): the
                        # held workspace gives up its outputs.
                        wall = time.monotonic() - start
                        fetch_outputs(container, spec, self.user, WORKSPACE)
                        kill(container, "SIGTERM")
                    exit_code = wait_exit(container, pump, sink, deadline, cpu)
                    if not held:
                        wall = time.monotonic() - start
                    if exit_code is None:
                        kill(container)
                    pump.join(timeout=DRAIN_S)
                except BaseException:
                    kill(container)
                    raise
        finally:
            output.close()
        container.reload()
        state = container.attrs.get("State", {})
        timed_out = exit_code is None
        error = sink.flood_error
        if state.get("Error"):
            error = error or f"container error: {state['Error']}"
        return self._result(
            spec,
            exit_code=exit_code,
            timed_out=timed_out,
            oom=bool(state.get("OOMKilled")) and not timed_out,
            error=error,
            wall_s=wall if spec.outputs else engine_wall_s(state) or wall,
            cpu_s=cpu.last_s,
            warnings=sink.warnings,
        )

    def _result(self, spec: RunSpec, *, exit_code: int | None, **fields: Any) -> ExecResult:
        return ExecResult(
            exit_code=exit_code, log_path=spec.log_path, executor=self.name, sandboxed=self.sandboxed, **fields
        )

    # -- housekeeping -----------------------------------------------------------------

    def prune(self) -> int:
        """Remove every container this harness created (running ones too); returns how many."""
        return prune_containers(self.client())

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def device_requests(gpus: str | None) -> list[dict[str, Any]]:
    """`--gpus` as device requests: `all`, a count (`2`), or ids (`device=0,1`, `0,1`)."""
    spec = GpuSpec.parse(gpus)
    return spec.device_requests() if spec is not None else []
