"""What every `speedrun` command shares: the consoles, error rendering and `key=value` flags."""

from __future__ import annotations

import json
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from harness.cli.render import safe_text
from harness.errors import SpeedrunError

console = Console()
err_console = Console(stderr=True)
#: Set by the app's callback from `--debug`.
state = {"debug": False}


def fail(exc: BaseException) -> NoReturn:
    if state["debug"]:
        raise exc
    # Never read as markup: a message may quote a path, a log or a model's answer.
    err_console.print(Text("error: ", style="bold red") + safe_text(str(exc), limit=2000), highlight=False)
    raise typer.Exit(2)


def parse_kv(pairs: list[str], flag: str) -> dict[str, Any]:
    """`key=value` flags; values are parsed as JSON when they can be (numbers, booleans)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SpeedrunError(f"{flag} wants key=value, got {pair!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out
