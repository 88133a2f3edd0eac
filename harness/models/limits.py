"""How many requests may be in flight to one API at once (`--max-connections`), and how many
may start per minute (`--requests-per-minute`, `--tokens-per-minute`).

Limits are process-wide per provider and endpoint, not per model object: two models on the
same account share its rate limit, and a local server is shared by everything pointed at it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pydantic import BaseModel, Field

log = logging.getLogger(__name__)


class LimitSettings(BaseModel):
    """The concurrency part of a provider's `--model-arg` settings."""

    max_connections: int = Field(default=8, ge=1)


class ConnectionLimit:
    """A counting semaphore that holds one slot per request in flight."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._slots:
            yield


_lock = threading.Lock()
_limits: dict[tuple[str, str], ConnectionLimit] = {}


def connection_limit(provider: str, endpoint: str, max_connections: int) -> ConnectionLimit:
    """The shared limit for `provider` at `endpoint`; the first caller's size stands."""
    key = (provider, endpoint.rstrip("/"))
    with _lock:
        limit = _limits.get(key)
        if limit is None:
            limit = _limits[key] = ConnectionLimit(max_connections)
        elif limit.limit != max_connections:
            log.warning(
                "%s at %s already limited to %d connections; ignoring max_connections=%d",
                provider,
                endpoint,
                limit.limit,
                max_connections,
            )
    return limit


class PaceSettings(BaseModel):
    """The pacing part of a provider's `--model-arg` settings: an account's per-minute limits."""

    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)


class Pacer:
    """Keeps requests and tokens within per-minute limits over a sliding minute.

    A request's tokens are counted when it starts (prompt plus the answer cap, as vendors
    reserve them) and corrected to what it used when it ends. One request larger than the
    token limit still runs, alone in its minute.
    """

    WINDOW_S = 60.0

    def __init__(
        self,
        requests_per_minute: int | None,
        tokens_per_minute: int | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rpm, self.tpm = requests_per_minute, tokens_per_minute
        self.clock = clock
        self._lock = threading.Lock()
        self._log: deque[list[float]] = deque()  # [start time, tokens]

    def reserve(self, tokens: int) -> tuple[float, list[float] | None]:
        """Seconds until a request of `tokens` may start, or 0 and its place, reserved now."""
        with self._lock:
            now = self.clock()
            while self._log and self._log[0][0] <= now - self.WINDOW_S:
                self._log.popleft()
            waits = [0.0]
            if self.rpm is not None and len(self._log) >= self.rpm:
                waits.append(self._log[-self.rpm][0] + self.WINDOW_S - now)
            if self.tpm is not None and self._log:
                used = sum(t for _, t in self._log)
                # The oldest entries leave the window first; wait until enough have left.
                for start, spent in self._log:
                    if used + tokens <= self.tpm:
                        break
                    used -= spent
                    waits.append(start + self.WINDOW_S - now)
            wait = max(waits)
            if wait > 0:
                return wait, None
            place = [now, float(tokens)]
            self._log.append(place)
            return 0.0, place

    def settle(self, place: list[float], used: int) -> None:
        """Count what a finished request used instead of what it reserved."""
        with self._lock:
            place[1] = float(used)

    def pace(self, tokens: int, sleep: Callable[[float], None], on_wait: Callable[[float], None]) -> list[float]:
        """Block until a request of `tokens` may start; returns its place, for `settle`."""
        while True:
            wait, place = self.reserve(tokens)
            if place is not None:
                return place
            on_wait(wait)
            sleep(wait)


_pacers: dict[tuple[str, str], Pacer] = {}


def pacer(
    provider: str, endpoint: str, settings: PaceSettings, clock: Callable[[], float] = time.monotonic
) -> Pacer | None:
    """The shared pacer for `provider` at `endpoint`, or None without limits; the first caller's limits stand."""
    if settings.requests_per_minute is None and settings.tokens_per_minute is None:
        return None
    key = (provider, endpoint.rstrip("/"))
    with _lock:
        if key not in _pacers:
            _pacers[key] = Pacer(settings.requests_per_minute, settings.tokens_per_minute, clock)
        return _pacers[key]
