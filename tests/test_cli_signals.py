"""SIGTERM (kill, scancel, a container stop) must clean up like Ctrl-C: no orphaned training run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO
from tests.toytrack import write_toy_track


def _procs_under(root: Path) -> list[int]:
    """Pids of processes whose working directory lies under root."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(root)):
            found.append(int(entry.name))
    return found


def test_sigterm_kills_the_running_candidate_and_exits_resumable(tmp_path: Path) -> None:
    home = write_toy_track(tmp_path / "home", step_s=0.5)  # a run takes minutes: it is surely running
    cache = tmp_path / "cache"
    env = {**os.environ, "SPEEDRUN_HOME": str(home), "SPEEDRUN_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    cli = [sys.executable, "-c", "from harness.cli.app import app; app()"]
    cmd = [*cli, "eval", "--track", "toy", "--model", "null", "--nodes", "1", "--calibration-runs", "1"]
    cmd += ["--results-dir", str(tmp_path / "results")]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not _procs_under(cache) and not _procs_under(tmp_path / "results"):
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "no training run started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    assert "re-run the same command to resume" in out
    time.sleep(0.2)
    assert not _procs_under(cache) and not _procs_under(tmp_path / "results"), "a training run outlived the harness"
