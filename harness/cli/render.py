"""Rich rendering of the library's progress events (the only place that prints them)."""

from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.status import Status

from harness.events import Event

STYLES = {
    "phase": "bold cyan",
    "info": "dim",
    "warning": "yellow",
    "node_started": "",
    "node_finished": "bold",
    "model_status": "yellow",
    "stopped": "bold yellow",
    "calibration_run": "",
}


class EventRenderer:
    """Prints one line per meaningful event; training progress goes to a transient status line."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._status: Status | None = None
        self._lock = threading.Lock()
        self._t0 = time.monotonic()

    def __enter__(self) -> EventRenderer:
        if self.console.is_terminal:
            self._status = self.console.status("starting…")
            self._status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.stop()

    def __call__(self, ev: Event) -> None:
        with self._lock:
            stamp = f"[dim]{time.monotonic() - self._t0:7.1f}s[/dim]"
            who = f"[magenta]node {ev.node}[/magenta] " if ev.node is not None else ""
            if ev.kind == "node_line":
                if self._status is not None:
                    self._status.update(f"node {ev.node}: {ev.message}")
                elif "val_loss" in ev.message:
                    self.console.print(f"{stamp} {who}[dim]{ev.message}[/dim]", highlight=False)
                return
            if ev.kind == "node_running" and self._status is not None:
                self._status.update(f"node {ev.node}: running")
            style = STYLES.get(ev.kind, "")
            text = f"[{style}]{ev.message}[/{style}]" if style else ev.message
            if ev.kind == "node_finished":
                colour = {"valid": "green", "invalid": "yellow", "buggy": "red", "failed": "red"}.get(
                    str(ev.data.get("status")), "white"
                )
                text = f"[{colour}]{ev.message}[/{colour}]"
            if ev.message or ev.kind == "node_finished":
                self.console.print(f"{stamp} {who}{text}", highlight=False)
