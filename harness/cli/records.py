"""`speedrun records ...`: a thin face over harness.manifests.fetch."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from harness.cli._common import console, err_console, fail
from harness.errors import SpeedrunError
from harness.events import Event
from harness.manifests.fetch import DEFAULT_SOURCE, PINNED_COMMIT

records_app = typer.Typer(
    help="Fetch the records' code and hints that the project does not ship (the nanogpt track).",
    no_args_is_help=True,
)


@records_app.command("fetch")
def fetch_command(
    source: Annotated[
        str | None, typer.Option("--source", help=f"Clone to read: a URL or a local clone/mirror [{DEFAULT_SOURCE}].")
    ] = None,
    commit: Annotated[
        str, typer.Option("--commit", help="Commit to import; the default is the one the paper's results describe.")
    ] = PINNED_COMMIT,
    track: Annotated[str, typer.Option("--track", help="Track whose records to fetch.")] = "nanogpt",
) -> None:
    """Clone llm-speedrunner at a pinned commit and import each record's script and each task's hints."""
    from harness.manifests.fetch import fetch_records

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err_console, transient=True
    ) as progress:
        bar = progress.add_task("fetching", total=None)

        def on_event(ev: Event) -> None:
            if "total" in ev.data:
                progress.update(bar, completed=ev.data["done"], total=ev.data["total"], description=ev.message)
            else:
                progress.update(bar, description=ev.message)

        try:
            report = fetch_records(source, commit=commit, track=track, progress=on_event)
        except SpeedrunError as exc:
            progress.stop()
            fail(exc)
    console.print(
        f"[green]fetched[/green] {len(report.records)} records and the hints of {len(report.tasks)} tasks "
        f"from {report.source} at {report.commit[:12]} ({report.files} files, checksums in {report.manifest})",
        highlight=False,
    )
    if report.commit != PINNED_COMMIT:
        err_console.print(
            f"[yellow]note[/yellow]: commit {report.commit[:12]} is not the pinned {PINNED_COMMIT[:12]}; "
            "results are comparable only with runs on the same commit",
            highlight=False,
        )
    for warning in report.warnings:
        err_console.print(f"[yellow]warning[/yellow]: {warning}", highlight=False)
