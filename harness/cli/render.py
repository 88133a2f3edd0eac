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
    "model_progress": "dim",
    "stopped": "bold yellow",
    "calibration_run": "",
}


#: Without a live status line (output to a file), how often a long call's progress is printed.
PROGRESS_LOG_EVERY_S = 60.0


class EventRenderer:
    """Prints one line per meaningful event; training progress goes to a transient status line."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._status: Status | None = None
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        #: When a node's call progress was last printed (without a live status line).
        self._progress_printed: dict[int | None, float] = {}

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
            if ev.kind == "model_progress":
                self._model_progress(ev, stamp, who)
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

    def _model_progress(self, ev: Event, stamp: str, who: str) -> None:
        """A long model call: the live status line shows it (and prints a stall); a log gets a line a minute."""
        if self._status is not None:
            self._status.update(f"node {ev.node}: {ev.message}" if ev.node is not None else ev.message)
            if ev.data.get("silent_s") is None:
                return
        now = time.monotonic()
        if now - self._progress_printed.get(ev.node, self._t0 - PROGRESS_LOG_EVERY_S) >= PROGRESS_LOG_EVERY_S:
            self._progress_printed[ev.node] = now
            self.console.print(f"{stamp} {who}[dim]{ev.message}[/dim]", highlight=False)
