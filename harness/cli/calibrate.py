"""`speedrun calibrate`: measure the records' reference times on this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from harness.cli._common import console, err_console, fail, parse_kv
from harness.data.tracks import run_threads
from harness.errors import SpeedrunError

# ---- calibrate -------------------------------------------------------------------------------------


def calibrate_cmd(
    track: Annotated[str, typer.Option(help="Track to calibrate.")] = "mini",
    runs: Annotated[int, typer.Option(help="Runs per record (interleaved).")] = 3,
    records: Annotated[str | None, typer.Option(help="Comma-separated record ids (default: all).")] = None,
    executor: Annotated[str, typer.Option(help="local, docker or slurm.")] = "local",
    executor_arg: Annotated[
        list[str] | None,
        typer.Option(help="Executor setting key=value, as for `speedrun eval` (docker: cpuset=0 pins the runs)."),
    ] = None,
    executor_config: Annotated[Path | None, typer.Option(help="TOML file of executor settings, as for eval.")] = None,
    target_val_loss: Annotated[float | None, typer.Option(help="Override the target (smoke tests).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Prepared data (default: the cache).")] = None,
    gpus: Annotated[str | None, typer.Option(help="GPUs for a run.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Re-measure record times on this machine (the references that FSR compares against)."""
    from rich.progress import Progress

    from harness.cli.eval import executor_options
    from harness.data.tracks import ensure_data
    from harness.eval.calibration import calibrate, calibration_path, load_calibration
    from harness.eval.measure import MeasureSpec
    from harness.eval.setup import track_command, track_env, track_executor, track_model_check
    from harness.manifests.tracks import Record, load_track

    try:
        tr = load_track(track)
        recs = tr.records()
        if records:
            wanted = [r.strip() for r in records.split(",") if r.strip()]
            by_key = {r.id: r for r in recs} | {str(r.index): r for r in recs}
            missing = [w for w in wanted if w not in by_key]
            if missing:
                raise SpeedrunError(f"unknown record(s) {', '.join(missing)}; known: {', '.join(r.id for r in recs)}")
            recs = [by_key[w] for w in wanted]
        target = target_val_loss if target_val_loss is not None else tr.target_val_loss
        xargs = executor_options(executor, executor_config, parse_kv(executor_arg or [], "--executor-arg"))
        data = ensure_data(tr, data_dir, progress=lambda m: err_console.print(f"[dim]{m}[/dim]"))
        local = executor == "local"
        spec = MeasureSpec(
            command=track_command(tr, gpus, local=local),
            env=track_env(tr, data, gpus, local=local, seed=0, target_val_loss=target),
            time_limit_s=tr.time_limit_s,
            target_val_loss=target,
            data_dir=data.data_dir,
            gpus=gpus,
            threads=run_threads(tr),
            model_check=track_model_check(tr, data),
        )
        # Records of different PyTorch eras run in different images: one interleaved series per image.
        groups: dict[str | None, list[Record]] = {}
        for rec in recs:
            groups.setdefault(rec.image or tr.image if executor == "docker" else None, []).append(rec)
        with Progress(console=err_console, transient=False) as progress:
            bar = progress.add_task("calibrating", total=runs * len(recs))
            offset = [0]

            def on_event(ev: Any) -> None:
                if "time_ms" in ev.data:
                    progress.update(bar, completed=offset[0] + ev.data["done"], description=ev.message)
                else:
                    progress.update(bar, description=ev.message)

            for image, group in groups.items():
                ex = track_executor(tr, executor, xargs, image=image)
                try:
                    cal = calibrate(tr, group, runs=runs, executor=ex, spec=spec, on_event=on_event)
                finally:
                    ex.close()
                offset[0] += runs * len(group)
        # calibrate() saved after every run; what is on disk now holds every group's records.
        path = calibration_path(tr, cal.executor, target)
        cal = load_calibration(tr, cal.executor, target)
    except SpeedrunError as exc:
        fail(exc)
    out: dict[str, dict[str, Any]] = {
        rid: {
            "median_ms": t.median_ms,
            "times_ms": t.times_ms,
            "min_ms": t.spread[0],
            "max_ms": t.spread[1],
            "steps": t.steps,
        }
        for rid, t in cal.records.items()
        if rid in {r.id for r in recs}
    }
    if as_json:
        print(
            json.dumps(
                {"track": track, "machine": cal.machine.describe(), "file": str(path), "records": out},
                indent=2,
            )
        )
        return
    table = Table(title=f"calibration of {track} on {cal.machine.describe()}")
    for col in ("record", "median", "min – max", "runs", "steps"):
        table.add_column(col)
    for rid, o in out.items():
        table.add_row(
            rid,
            f"{o['median_ms'] / 1000:.2f} s",
            f"{o['min_ms'] / 1000:.2f} – {o['max_ms'] / 1000:.2f} s",
            str(len(o["times_ms"])),
            str(o["steps"][0] if o["steps"] else "-"),
        )
    console.print(table)
    console.print(f"[dim]saved {path}[/dim]")
