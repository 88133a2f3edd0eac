"""`speedrun scaffolds list`: built-in and installed search policies."""

from __future__ import annotations

import typer
from rich.table import Table

from harness.cli._common import console, fail
from harness.errors import SpeedrunError

scaffolds_app = typer.Typer(help="Search scaffolds.", no_args_is_help=True)


# ---- scaffolds -------------------------------------------------------------------------------------------


@scaffolds_app.command("list")
def scaffolds_list() -> None:
    """Built-in and installed scaffolds, with their parameters."""
    from harness.search import broken_plugins, scaffold_classes

    try:
        classes = scaffold_classes()
        broken = broken_plugins()
    except SpeedrunError as exc:
        fail(exc)
    table = Table(title="scaffolds")
    for col in ("name", "description", "parameters"):
        table.add_column(col)
    for name, cls in sorted(classes.items()):
        params = ", ".join(f"{k}={f.default}" for k, f in cls.Params.model_fields.items())
        table.add_row(name, cls.description, params)
    for name, reason in sorted(broken.items()):
        table.add_row(name, f"[red]{reason}[/red]", "-")
    console.print(table)
