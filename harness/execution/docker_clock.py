"""The harness's clock on a container: CPU time from its cgroup, wall time from the engine.

Neither comes from anything the run printed. The engine stamps a container's start and exit
(nanoseconds, its own clock), and the kernel counts the CPU time of every process in the
container's cgroup, which the engine drops once the container stops: so it is read while the
run goes on, as often as the executor polls.
"""

from __future__ import annotations

import contextlib
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any


def engine_errors() -> tuple[type[Exception], ...]:
    """What a call to the engine raises: the SDK's errors and, for timeouts, requests'."""
    import docker
    import requests

    return (docker.errors.DockerException, requests.exceptions.RequestException)


class CpuProbe:
    """The CPU time a running container has used, from its cgroup (all its processes together).

    Read from this host's cgroup files when the engine runs here (cheap, so every poll), else
    from the engine's stats every few seconds. The engine drops a container's cgroup when it
    stops, so the last reading before the exit is the figure: a lower bound by at most one
    poll's worth of CPU. None when neither source answers.
    """

    STATS_EVERY_S = 3.0

    def __init__(self, container: Any) -> None:
        self.container = container
        self.last_s: float | None = None
        self._file: Path | None = None
        self._kind = ""
        self._next_stats = 0.0
        self._located = False

    def sample(self) -> None:
        if not self._located:
            self._located = True
            self._locate()
        if self._file is not None:
            value = self._read_file()
            if value is not None:
                self.last_s = value
                return
        if time.monotonic() >= self._next_stats:
            self._next_stats = time.monotonic() + self.STATS_EVERY_S
            self._read_stats()

    def _locate(self) -> None:
        """The container's cgroup CPU file, through its main process's /proc entry."""
        with contextlib.suppress(*engine_errors(), KeyError, ValueError, TypeError, OSError):
            self.container.reload()
            pid = int(self.container.attrs["State"]["Pid"])
            if pid <= 0:
                return
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
            if not any(self.container.id in line for line in lines):
                return  # another machine's engine: that pid is not the container here
            for line in lines:
                _, controllers, path = line.split(":", 2)
                if "cpuacct" in controllers.split(","):
                    for mount in ("cpuacct", "cpu,cpuacct", "cpuacct,cpu"):
                        candidate = Path("/sys/fs/cgroup", mount, path.lstrip("/"), "cpuacct.usage")
                        if candidate.is_file():
                            self._file, self._kind = candidate, "ns"
                            return
            for line in lines:
                _, controllers, path = line.split(":", 2)
                if controllers == "":
                    for mount in ("", "unified"):
                        candidate = Path("/sys/fs/cgroup", mount, path.lstrip("/"), "cpu.stat")
                        if candidate.is_file():
                            self._file, self._kind = candidate, "stat"
                            return

    def _read_file(self) -> float | None:
        assert self._file is not None
        try:
            text = self._file.read_text()
        except OSError:
            return None
        if self._kind == "ns":
            return int(text.strip()) / 1e9
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
        return None

    def _read_stats(self) -> None:
        with contextlib.suppress(*engine_errors(), KeyError, ValueError, TypeError):
            stats = self.container.stats(stream=False, one_shot=True)
            total = int(stats["cpu_stats"]["cpu_usage"]["total_usage"])
            if total > 0:
                self.last_s = total / 1e9


def engine_wall_s(state: dict[str, Any]) -> float | None:
    """Start to exit by the engine's own clock (nanosecond timestamps), if it recorded both."""
    try:
        started, finished = (_parse_engine_time(state[k]) for k in ("StartedAt", "FinishedAt"))
    except (KeyError, ValueError, TypeError):
        return None
    seconds = (finished - started).total_seconds()
    return seconds if seconds > 0 else None


def _parse_engine_time(value: str) -> datetime:
    """`2024-05-01T12:00:00.123456789Z` (Go's RFC 3339 with nanoseconds) as a datetime."""
    head, _, frac = value.rstrip("Z").partition(".")
    digits = re.match(r"\d*", frac)
    micro = (digits.group(0) if digits else "")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{head}.{micro}+00:00")
