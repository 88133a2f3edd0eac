"""`speedrun data prepare`: a track's training and validation shards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.cli._common import console, fail
from harness.errors import SpeedrunError

data_app = typer.Typer(help="Prepare training data.", no_args_is_help=True)


# ---- data ---------------------------------------------------------------------------------------------


@data_app.command("prepare")
def data_prepare(
    track: Annotated[str, typer.Argument(help="mini or nanogpt")],
    data_dir: Annotated[Path | None, typer.Option(help="Where the shards go (default: the cache).")] = None,
    train_shards: Annotated[
        int | None,
        typer.Option(help="nanogpt: FineWeb training shards of 100M tokens (default 65: enough for every record)."),
    ] = None,
) -> None:
    """Download (or find) and verify a track's data."""
    try:
        if track == "mini":
            from harness.data.mini import prepare_mini

            mini = prepare_mini(data_dir, progress=lambda m: console.print(f"[dim]{m}[/dim]", highlight=False))
            console.print(
                f"[green]ready[/green]: {mini.data_dir} ({mini.train_tokens:,} train tokens; "
                f"validation plays: {', '.join(mini.plays_val)})"
            )
        elif track == "nanogpt":
            from harness.data.fineweb import prepare_fineweb

            prepared = prepare_fineweb(
                data_dir,
                train_shards=train_shards,
                progress=lambda m: console.print(f"[dim]{m}[/dim]", highlight=False),
            )
            console.print(f"[green]ready[/green]: {prepared.data_dir}")
        else:
            raise SpeedrunError(f"unknown track {track!r}; use mini or nanogpt")
    except SpeedrunError as exc:
        fail(exc)
