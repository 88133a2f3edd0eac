"""How a long model call shows: its progress without flooding a log."""

from __future__ import annotations

import io

from rich.console import Console

from harness.cli.render import EventRenderer
from harness.events import Event


def test_model_progress_goes_to_a_log_once_a_minute_per_node() -> None:
    out = io.StringIO()
    with EventRenderer(Console(file=out, width=200)) as render:
        for tokens in (10, 20, 30):
            render(Event("model_progress", f"answering: ~{tokens} tokens in 5 s", node=1, data={"silent_s": None}))
        render(Event("model_progress", "waiting for the first token for 40 s (40 s)", node=2, data={"silent_s": 40}))
        render(Event("model_status", "rate limited (429), retrying in 3 s (1/6)", node=2))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert "node 1" in lines[0] and "~10 tokens" in lines[0]
    assert "node 2" in lines[1] and "waiting for the first token" in lines[1]
    assert "rate limited" in lines[2]
