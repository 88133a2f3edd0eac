"""The slurm executor through submitit's local cluster (same code path as a real Slurm job)."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.execution import get_executor
from harness.execution.base import RunSpec


def test_job_runs_streams_and_keeps_limits(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train.py").write_text(
        "import os\nprint('step:1/1 val_loss:1.0000 train_time:5ms step_avg:5.00ms')\n"
        "print('key' if 'OPENAI_API_KEY' in os.environ else 'no key')\n"
    )
    ex = get_executor("slurm", cluster="local", poll_s=0.2)
    lines: list[str] = []
    res = ex.run(
        RunSpec(command=[sys.executable, "train.py"], workspace=ws, log_path=tmp_path / "run.log", time_limit_s=60),
        lines.append,
    )
    assert res.ok and res.executor == "slurm"
    assert "no key" in (tmp_path / "run.log").read_text()
    assert lines and lines[0].startswith("step:1/1")


def test_limit_inside_job(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train.py").write_text("import time\ntime.sleep(300)\n")
    res = get_executor("slurm", cluster="local", poll_s=0.2).run(
        RunSpec(command=[sys.executable, "train.py"], workspace=ws, log_path=tmp_path / "run.log", time_limit_s=2)
    )
    assert res.timed_out
