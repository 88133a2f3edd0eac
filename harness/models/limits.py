"""How many requests may be in flight to one API at once (`--max-connections`).

The limit is process-wide per provider and endpoint, not per model object: two models on the
same account share its rate limit, and a local server is shared by everything pointed at it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
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
