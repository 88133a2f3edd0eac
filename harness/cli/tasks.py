"""`speedrun tasks list|show`: the benchmark's tasks, their records and hints."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from harness.cli._common import console, fail
from harness.errors import SpeedrunError

tasks_app = typer.Typer(help="List and show benchmark tasks.", no_args_is_help=True)


# ---- tasks --------------------------------------------------------------------------------------


@tasks_app.command("list")
def tasks_list(
    track: Annotated[str | None, typer.Option(help="Only this track (mini, nanogpt).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the tasks of every track (or one)."""
    from harness.manifests.tracks import all_tasks, load_track

    try:
        tasks = all_tasks(track)
        rows: list[dict[str, Any]] = []
        for t in tasks:
            tr = load_track(t.track)
            rows.append(
                {
                    "id": t.id,
                    "track": t.track,
                    "title": t.title,
                    "from_record": t.from_record,
                    "to_record": t.to_record,
                    "hints": t.hints.levels,
                    "target_val_loss": t.target_val_loss,
                    "available": tr.record(t.from_record).available and tr.record(t.to_record).available,
                }
            )
    except SpeedrunError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"tasks ({len(rows)})")
    for col in ("id", "title", "records", "hints", "target", "ready"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["id"],
            r["title"],
            f"{r['from_record']} → {r['to_record']}",
            ", ".join(r["hints"]) or "-",
            f"{r['target_val_loss']}",
            "yes" if r["available"] else "[yellow]fetch[/yellow]",
        )
    console.print(table)


@tasks_app.command("show")
def tasks_show(task_id: str, hints: Annotated[bool, typer.Option(help="Print the hints in full.")] = True) -> None:
    """Show one task: its records, reference times, rules and hints."""
    from harness.manifests.tracks import get_task, load_track

    try:
        task = get_task(task_id)
        track = load_track(task.track)
        a, b = track.record(task.from_record), track.record(task.to_record)
    except SpeedrunError as exc:
        fail(exc)
    console.print(f"[bold]{task.id}[/bold]: {task.title}")
    console.print(
        f"track {track.name} · target val_loss {task.target_val_loss} · hints: {', '.join(task.hints.levels) or 'none'}"
    )
    for label, rec in (("from", a), ("to", b)):
        ref = rec.reference
        ref_s = (
            f"{ref.time_ms / 1000:.1f} s, {ref.steps} steps, val_loss {ref.val_loss} ({ref.source or ref.machine})"
            if ref
            else "not measured"
        )
        console.print(f"  {label:4} {rec.id}: {rec.title} — reference {ref_s}", highlight=False)
    console.print("[bold]rules[/bold]")
    for rule in task.rules:
        console.print(f"  - {rule}", highlight=False)
    if hints:
        for level in task.hints.levels:
            console.rule(level)
            console.print(getattr(task.hints, level), markup=False, highlight=False)
