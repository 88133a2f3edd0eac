"""The one LogSink every executor copies a run's output through: capped, cut, guarded, linear."""

from __future__ import annotations

import io
import os
import threading

from harness.execution.base import FLOOD_MARK, LogSink


def _sink(**kw: object) -> tuple[LogSink, io.BytesIO, list[str]]:
    log = io.BytesIO()
    lines: list[str] = []
    return LogSink(log, lines.append, **kw), log, lines  # type: ignore[arg-type]


def test_lines_split_across_chunks_arrive_whole_and_in_order() -> None:
    sink, log, lines = _sink()
    for chunk in (b"step 0\nste", b"p 1", b"\n\nstep 2\r\n", b"tail without newline"):
        sink.feed(chunk)
    sink.finish()
    assert lines == ["step 0", "step 1", "", "step 2", "tail without newline"]
    assert log.getvalue() == b"step 0\nstep 1\n\nstep 2\r\ntail without newline"


def test_a_long_line_is_cut_for_the_callback_not_buffered() -> None:
    sink, log, lines = _sink(max_line_bytes=100)
    for _ in range(1000):  # 1 MB without a newline, fed as the pipe would
        sink.feed(b"x" * 1000)
    assert len(sink._pending) <= 100  # what is held back never grows past the cap
    sink.feed(b"\nnext\n")
    assert lines[0] == "x" * 100 + " [... line cut]"
    assert lines[1] == "next"
    assert len(log.getvalue()) == 1_000_000 + 6  # the file keeps the whole output


def test_the_cap_cuts_the_log_and_calls_on_flood_once() -> None:
    floods: list[int] = []
    sink, log, _ = _sink(max_bytes=1000, on_flood=lambda: floods.append(1))
    for _ in range(50):
        sink.feed(b"y" * 99 + b"\n")
    assert sink.flooded.is_set() and floods == [1]
    assert log.getvalue().endswith(FLOOD_MARK)
    assert len(log.getvalue()) == 1000 + len(FLOOD_MARK)
    assert sink.flood_error is not None and "log exceeded" in sink.flood_error


def test_a_raising_callback_is_a_warning_and_later_lines_still_arrive() -> None:
    seen: list[str] = []

    def flaky(line: str) -> None:
        seen.append(line)
        if line.startswith("bad"):
            raise ValueError(f"cannot show {line!r}")

    sink = LogSink(io.BytesIO(), flaky)
    sink.feed(b"bad 1\ngood\nbad 2\nlast\n")
    sink.finish()
    assert seen == ["bad 1", "good", "bad 2", "last"]
    assert "cannot show 'bad 1'" in sink.warnings[0]
    assert "2 times" in sink.warnings[-1]


def test_pump_reads_a_pipe_in_bounded_chunks_to_its_end() -> None:
    read_fd, write_fd = os.pipe()
    sink, log, lines = _sink(max_line_bytes=10)

    def writer() -> None:
        with os.fdopen(write_fd, "wb") as w:
            w.write(b"z" * 300_000 + b"\nend")

    t = threading.Thread(target=writer)
    t.start()
    sink.pump_fd(read_fd)
    t.join()
    os.close(read_fd)
    assert lines == ["z" * 10 + " [... line cut]", "end"]
    assert len(log.getvalue()) == 300_004
