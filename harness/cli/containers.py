"""`speedrun containers ...` and `speedrun doctor`: thin faces over harness.execution.images and harness.doctor."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from harness.cli._common import console, fail
from harness.doctor import run_checks
from harness.errors import SpeedrunError
from harness.execution import base_image
from harness.execution import images as containers

containers_app = typer.Typer(
    help="Build the sandbox images (also without a registry) and remove leftover containers.",
    no_args_is_help=True,
)

DockerHostOpt = typer.Option(None, "--docker-host", help="Engine address (default: $DOCKER_HOST or the local socket).")


def _print_line(line: str) -> None:
    console.print(Text(line, style="dim"))


@containers_app.command("build")
def build_command(
    track: str = typer.Option("mini", "--track", help="Track whose image to build."),
    base: str | None = typer.Option(
        None, "--base", help=f"Base image (default {containers.DEFAULT_BASE}; or e.g. python:3.11-slim)."
    ),
    wheelhouse: Path | None = typer.Option(
        None,
        "--wheelhouse",
        exists=True,
        file_okay=False,
        help=(
            "Directory of wheels (torch, numpy and their dependencies) to install from, without an index "
            "(default for mini: made in the cache from the package index this machine's pip reaches)."
        ),
    ),
    tag: str | None = typer.Option(None, "--tag", help="Image tag (default: the track's image)."),
    docker_host: str | None = DockerHostOpt,
) -> None:
    """Build a track's image (for nanogpt, one per PyTorch era; `--tag` picks one)."""
    try:
        images = containers.build_track_images(
            track, base=base, wheelhouse=wheelhouse, tag=tag, progress=_print_line, docker_host=docker_host
        )
    except SpeedrunError as exc:
        fail(exc)
    for image in images:
        console.print(f"[green]built[/] {image}")


@containers_app.command("base")
def base_command(
    tag: str = typer.Option(containers.DEFAULT_BASE, "--tag", help="Tag of the base image."),
    mirror: str | None = typer.Option(None, "--mirror", help="Debian mirror (default: the one apt uses)."),
    docker_host: str | None = DockerHostOpt,
) -> None:
    """Make the Debian bookworm base image with debootstrap (root; no registry needed)."""
    try:
        image = base_image.base_image_from_debootstrap(
            tag, mirror=mirror, progress=_print_line, docker_host=docker_host
        )
    except SpeedrunError as exc:
        fail(exc)
    console.print(f"[green]ready[/] {image}")


@containers_app.command("prune")
def prune_command(docker_host: str | None = DockerHostOpt) -> None:
    """Remove all containers speedrun started, running ones included (don't run during an evaluation)."""
    from harness.execution.docker_container import prune_containers

    try:
        removed = prune_containers(containers.docker_client(docker_host))
    except SpeedrunError as exc:
        fail(exc)
    console.print(f"removed {removed} container{'s' if removed != 1 else ''}")


def doctor_command(docker_host: str | None = DockerHostOpt) -> None:
    """Check this machine: Docker engine, GPU runtime, images, data, API keys, torch."""
    table = Table(show_header=True, header_style="bold")
    table.add_column("")
    table.add_column("check", no_wrap=True)
    # Folded, never cut with an ellipsis: a path or a command is useless half-shown.
    table.add_column("status", overflow="fold")
    table.add_column("to do", overflow="fold")
    for check in run_checks(docker_host):
        mark = Text("✓", style="green") if check.ok else Text("✗", style="red")
        table.add_row(mark, check.name, Text(check.detail), Text(check.fix, style="yellow"))
    console.print(table)
