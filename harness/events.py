"""Progress events: the library reports what it does; the CLI decides how to show it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """`kind` is one of: info, warning, phase, node_started, node_coded, node_running, node_line,
    node_finished, model_status, calibration_run, stopped."""

    kind: str
    message: str = ""
    node: int | None = None
    data: dict[str, Any] = field(default_factory=dict)


EventSink = Callable[[Event], None]


def ignore(_: Event) -> None:
    """The sink used when nobody listens."""
