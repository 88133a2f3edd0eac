"""Timing a script to the target: one run through an executor, read by the parser."""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import BaseModel

from harness.execution.base import Executor, RunSpec
from harness.logparse import parse_log_file
from harness.outcome import RunResult, judge
from harness.search.workspace import write_files


class MeasureSpec(BaseModel):
    """How to run a script of a track: what `Engine` uses for candidates, for references too."""

    command: list[str]
    env: dict[str, str]
    time_limit_s: float
    target_val_loss: float
    data_dir: Path | None = None
    gpus: str | None = None


def measure(files: dict[str, str], workdir: Path, spec: MeasureSpec, executor: Executor, label: str = "") -> RunResult:
    """Run `files` once in a fresh `workdir` and judge the log against the target."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workspace = workdir / "workspace"
    write_files(workspace, files)
    run = executor.run(
        RunSpec(
            command=spec.command,
            workspace=workspace,
            log_path=workdir / "run.log",
            env=spec.env,
            time_limit_s=spec.time_limit_s,
            data_dir=spec.data_dir,
            gpus=spec.gpus,
            label=label,
        )
    )
    return judge(parse_log_file(run.log_path), run, spec.target_val_loss, [])
