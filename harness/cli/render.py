"""Rich rendering of the library's progress events (the only place that prints them).

Event messages carry text that a candidate printed or a model wrote, so none of it is ever
parsed as rich markup or passed to the terminal raw: it becomes `Text` after `plain()` has
removed escape sequences and control characters (no clear-screen, no OSC 52 clipboard write,
no OSC 8 link, no bidi trick), and a candidate's output is shown as output, behind a marker
that no harness message carries, so that it cannot pass for the harness's own word.
"""

from __future__ import annotations

import re
import threading
import time

from rich.console import Console
from rich.status import Status
from rich.text import Text

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
STATUS_COLOURS = {"valid": "green", "invalid": "yellow", "buggy": "red", "failed": "red"}
#: What precedes a candidate's own output on screen.
OUTPUT_MARK = "output │ "
#: A shown line is cut to this many characters.
MAX_SHOWN = 300

_ESCAPE = re.compile(
    r"""
      \x1b\[[0-?]*[ -/]*[@-~]?          # CSI (colours, cursor moves, clear screen)
    | \x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?  # OSC (title, clipboard, hyperlinks), to BEL or ST
    | \x1b[PX^_][^\x1b]*(?:\x1b\\)?     # DCS, SOS, PM, APC strings
    | \x1b.?                           # any other escape
    | \x9b[0-?]*[ -/]*[@-~]?            # 8-bit CSI
    | [\x90\x98\x9d\x9e\x9f][^\x07\x9c]*(?:\x07|\x9c)?  # 8-bit string controls
    """,
    re.VERBOSE,
)
#: C0/C1 controls (tab and newline become spaces first), DEL, zero-width and bidi controls.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def plain(text: str, limit: int = MAX_SHOWN) -> str:
    """`text` as one line of printable characters: escapes and controls removed, cut to `limit`."""
    text = _ESCAPE.sub("", text.replace("\t", " ").replace("\n", " ").replace("\r", " "))
    text = _CONTROL.sub("", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def safe_text(text: str, style: str = "", limit: int = MAX_SHOWN) -> Text:
    """Untrusted text for rich: never read as markup."""
    return Text(plain(text, limit), style=style)


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
            line = Text(f"{time.monotonic() - self._t0:7.1f}s ", style="dim")
            if ev.node is not None:
                line.append(f"node {ev.node} ", style="magenta")
            if ev.kind == "node_line":
                output = Text(OUTPUT_MARK, style="dim") + safe_text(ev.message, "dim italic")
                if self._status is not None:
                    self._status.update(Text(f"node {ev.node} ") + output)
                elif "val_loss" in ev.message:
                    self.console.print(line + output, highlight=False)
                return
            if ev.kind == "model_progress":
                self._model_progress(ev, line)
                return
            if ev.kind == "node_running" and self._status is not None:
                self._status.update(Text(f"node {ev.node}: running"))
            style = STYLES.get(ev.kind, "")
            if ev.kind == "node_finished":
                style = STATUS_COLOURS.get(str(ev.data.get("status")), "white")
            if ev.message or ev.kind == "node_finished":
                self.console.print(line + safe_text(ev.message, style), highlight=False)

    def _model_progress(self, ev: Event, line: Text) -> None:
        """A long model call: the live status line shows it (and prints a stall); a log gets a line a minute."""
        shown = safe_text(ev.message)
        if self._status is not None:
            self._status.update(Text(f"node {ev.node}: ") + shown if ev.node is not None else shown)
            if ev.data.get("silent_s") is None:
                return
        now = time.monotonic()
        if now - self._progress_printed.get(ev.node, self._t0 - PROGRESS_LOG_EVERY_S) >= PROGRESS_LOG_EVERY_S:
            self._progress_printed[ev.node] = now
            self.console.print(line + safe_text(ev.message, "dim"), highlight=False)
