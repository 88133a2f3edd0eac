"""One container of the docker executor, from outside: its name, its output stream, waiting
for it to end (or to hold its outputs), copying the outputs out, killing it, pruning
leftovers; and making a workspace writable for the container's user.

`docker.py` decides what a container is (its configuration) and the order of a run; these
are the engine calls it makes, each guarded so that a failure here cannot hide how the run
ended.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.confine import write_confined
from harness.execution.base import MAX_OUTPUT_BYTES, LogSink, RunSpec
from harness.execution.docker_clock import CpuProbe, engine_errors
from harness.execution.limits import HELD_NAME

#: Label on every container the docker executor creates; `prune` removes by it.
LABEL = "speedrun"
RUN_LABEL = "speedrun.run"
#: How often the waiting thread wakes up, so that Ctrl-C and the limit are noticed promptly.
POLL_S = 0.25


def prune_containers(client: Any, label: str | None = None) -> int:
    """Remove containers labelled `speedrun` (or `speedrun.run=<label>`), stopped or running."""
    import docker

    selector = f"{RUN_LABEL}={label}" if label is not None else f"{LABEL}=1"
    removed = 0
    for container in client.containers.list(all=True, filters={"label": selector}):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
            removed += 1
    return removed


def make_writable_for(workspace: Path, user: str) -> None:
    """Let the container's `uid:gid` write the workspace.

    As root the tree is handed to that uid (chown); as the same uid nothing is needed;
    otherwise, as an unprivileged user, the tree is opened to everyone (chmod a+rwX),
    because only root may give files away. Links are never followed: a workspace
    reused from an earlier run may hold links planted by its code.
    """
    uid, gid = (int(part) for part in user.split(":"))
    if os.geteuid() == uid:
        return
    root = os.geteuid() == 0
    for path in [workspace, *_walk(workspace)]:
        st = path.lstat()
        if path.is_symlink():
            if root:
                os.lchown(path, uid, gid)
            continue
        if root:
            os.lchown(path, uid, gid)
        else:
            extra = 0o777 if path.is_dir() else 0o666 | (0o111 if st.st_mode & 0o100 else 0)
            with contextlib.suppress(PermissionError):
                path.chmod(st.st_mode | extra)


def _walk(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        yield from (base / name for name in dirnames)
        yield from (base / name for name in filenames)


def pump_frames(frames: Iterable[bytes], sink: LogSink) -> None:
    """Copy the container's output frames into the sink as they come."""
    import docker

    try:
        for chunk in frames:
            sink.feed(chunk)
    except (docker.errors.DockerException, OSError, ValueError):
        # The stream breaks when the container is removed under it (Ctrl-C); what was
        # written is kept and the waiting thread decides how the run ended.
        pass
    sink.finish()


#: Run inside the held container (the engine's archive API does not see tmpfs mounts): one
#: output to stdout, reached without following a link, a regular file within the size cap.
_READ_OUTPUT = r"""
import os, stat, sys
parts = sys.argv[1].split("/")
fd = os.open(sys.argv[3], os.O_RDONLY | os.O_DIRECTORY)
for part in parts[:-1]:
    nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
    os.close(fd)
    fd = nxt
f = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
info = os.fstat(f)
if not stat.S_ISREG(info.st_mode) or info.st_size > int(sys.argv[2]):
    sys.exit(3)
while chunk := os.read(f, 1 << 20):
    sys.stdout.buffer.write(chunk)
"""


def fetch_outputs(container: Any, spec: RunSpec, user: str, workspace: str) -> None:
    """Copy the declared outputs out of the held container into `spec.workspace`: regular files
    only (a link is not followed), each at most MAX_OUTPUT_BYTES. Nothing of the run's is
    running by then: the launcher killed it all before it took its held name."""
    for name in spec.outputs:
        with contextlib.suppress(*engine_errors(), OSError):
            cmd = ["python", "-I", "-S", "-c", _READ_OUTPUT, name, str(MAX_OUTPUT_BYTES), workspace]
            done = container.exec_run(cmd, user=user, demux=True)
            data = (done.output or (None, None))[0] or b""
            if done.exit_code == 0 and len(data) <= MAX_OUTPUT_BYTES:
                write_confined(spec.workspace, name, data)


def attach(container: Any) -> Any:
    """The container's output as a socket of multiplexed frames, with no read timeout.

    The SDK's `attach(stream=True)` keeps the client's read timeout, which would cut the
    stream of a run that is silent for a minute (a long compile, a long step).
    """
    params = {"stdout": 1, "stderr": 1, "stream": 1, "logs": 1}
    sock = container.client.api.attach_socket(container.id, params=params)
    for layer in (sock, getattr(sock, "_sock", None)):
        if layer is not None and hasattr(layer, "settimeout"):
            layer.settimeout(None)
    return sock


def kill(container: Any, signal: str = "SIGKILL") -> None:
    """Kill if still running; a failure here must not hide how the run ended."""
    with contextlib.suppress(*engine_errors()):
        container.kill(signal=signal)


def container_name(label: str) -> str:
    """A readable unique name (`speedrun-mini-0-n3-1a2b3c4d`), for whoever runs `docker ps`."""
    slug = re.sub(r"[^a-zA-Z0-9_.-]+", "-", label).strip("-.")[:40]
    return f"speedrun-{slug + '-' if slug else ''}{secrets.token_hex(4)}"


def wait_exit(container: Any, pump: threading.Thread, sink: LogSink, deadline: float, cpu: CpuProbe) -> int | None:
    """The exit status, or None when the deadline passed first.

    Waiting in short slices keeps the main thread responsive to Ctrl-C, which a
    blocking HTTP wait on the engine would not be; each slice also reads the run's CPU
    usage, which the engine forgets once the container has stopped.
    """
    import requests

    killed = False
    while pump.is_alive() and time.monotonic() < deadline:
        if sink.flooded.is_set() and not killed:
            # Killed from here, not from the pump: the engine may wait for the output
            # to be read before it lets the container die, and only the pump reads it.
            kill(container)
            killed = True
        cpu.sample()
        pump.join(timeout=POLL_S)
    # The log stream ends when the container stops, but it can also break early;
    # the engine's own wait is the authority on the exit.
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        cpu.sample()
        try:
            status = container.wait(timeout=min(remaining, 1.0))
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            continue
        return int(status.get("StatusCode", -1))


def wait_held(container: Any, pump: threading.Thread, sink: LogSink, deadline: float, cpu: CpuProbe) -> bool:
    """Whether the container is held with its command done: the engine sees the launcher
    alone in it, under the name it takes only then (no other process can set its name)."""
    while time.monotonic() < deadline:
        if sink.flooded.is_set():
            return False
        cpu.sample()
        try:
            procs = container.top(ps_args="-o pid,comm").get("Processes") or []
        except engine_errors():
            return False  # stopped: the normal wait takes it from here
        if len(procs) == 1 and procs[0][-1] == HELD_NAME:
            return True
        pump.join(timeout=POLL_S)
    return False
