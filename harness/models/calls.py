"""One request in flight, watched: its progress reported, its time bounded, and stoppable.

The SDK call runs in a helper thread that passes what arrives (pieces of text, then the whole
answer) through a queue; the calling thread watches the queue. So a call that stalls, runs
past its time limit or is cancelled (Ctrl-C) ends at once for the caller, whatever the socket
underneath is doing: a blocked read cannot be interrupted from another thread, but it need not
be waited for. The helper thread is a daemon that closes the stream when it next wakes, which
tells the server to stop generating.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from harness.models.context import estimate_tokens
from harness.models.contract import Completion, ModelError
from harness.models.retry import IncompleteResponse

#: No text for this long is shown as a stall (the server may be reading a long prompt).
STALL_NOTICE_S = 30.0
#: How often progress is reported while text arrives or while waiting.
PROGRESS_EVERY_S = 5.0
_POLL_S = 0.05


class Stalled(Exception):
    """Nothing arrived for `stall_s`: the server or the connection is stuck (worth a retry)."""


@dataclass(frozen=True)
class Progress:
    """How far one call has got."""

    tokens: int
    elapsed_s: float
    #: Seconds since anything arrived, when that is long enough to say so.
    silent_s: float | None = None

    def describe(self) -> str:
        head = f"~{self.tokens:,} tokens in {self.elapsed_s:.0f} s" if self.tokens else f"{self.elapsed_s:.0f} s"
        if self.silent_s is None:
            return f"answering: {head}"
        what = "no new tokens" if self.tokens else "waiting for the first token"
        return f"{what} for {self.silent_s:.0f} s ({head})"


class CallWatch:
    """The limits of one call and the switch that cancels it."""

    def __init__(
        self,
        time_limit_s: float,
        stall_s: float,
        on_progress: Callable[[Progress], None],
        progress_every_s: float = PROGRESS_EVERY_S,
        stall_notice_s: float = STALL_NOTICE_S,
    ) -> None:
        self.time_limit_s, self.stall_s = time_limit_s, stall_s
        self.on_progress = on_progress
        self.progress_every_s, self.stall_notice_s = progress_every_s, stall_notice_s
        self.cancelled = threading.Event()

    def run(
        self, chunks: Callable[[], Iterator[str | Completion]], clock: Callable[[], float] = time.monotonic
    ) -> Completion:
        """Consume `chunks()` (in a helper thread) and return its `Completion`."""
        inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        done = threading.Event()
        threading.Thread(target=_pump, args=(chunks, inbox, done), name="model-call", daemon=True).start()
        start = last_data = last_report = clock()
        chars = 0
        try:
            while True:
                if self.cancelled.is_set():
                    raise ModelError("the call was cancelled: the search is stopping", permanent=True)
                now = clock()
                progress = Progress(estimate_tokens(chars), now - start)
                if now - start > self.time_limit_s:
                    raise ModelError(
                        f"no complete answer within the call time limit of {self.time_limit_s:.0f} s "
                        f"({progress.describe()}); raise --call-time-limit, or cap answers lower with "
                        "--max-answer-tokens",
                        permanent=True,
                    )
                if now - last_data > self.stall_s:
                    raise Stalled(f"stream stalled: nothing for {now - last_data:.0f} s after {progress.describe()}")
                if now - last_report >= self.progress_every_s:
                    silent = now - last_data
                    self.on_progress(
                        Progress(progress.tokens, progress.elapsed_s, silent if silent >= self.stall_notice_s else None)
                    )
                    last_report = now
                try:
                    kind, item = inbox.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if kind == "error":
                    raise item
                if kind == "end":
                    raise IncompleteResponse("the provider returned no answer")
                if isinstance(item, Completion):
                    return item
                chars += len(item)
                last_data = clock()
        finally:
            done.set()


def _pump(
    chunks: Callable[[], Iterator[str | Completion]], inbox: queue.Queue[tuple[str, Any]], done: threading.Event
) -> None:
    iterator: Iterator[str | Completion] | None = None
    try:
        iterator = chunks()
        for chunk in iterator:
            inbox.put(("chunk", chunk))
            if done.is_set() or isinstance(chunk, Completion):
                break
        else:
            inbox.put(("end", None))
    except BaseException as exc:  # whatever the SDK raises belongs to the caller's attempt
        inbox.put(("error", exc))
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            # Ends the SDK's `with` block, which closes the response; nobody listens to its errors.
            with contextlib.suppress(Exception):
                close()
