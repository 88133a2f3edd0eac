"""Ctrl-C during a long model call stops the harness at once, resumable (it used to wait for
the call: 24 minutes for a local model)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO
from tests.fake_llm_server import FakeLLMServer, answer
from tests.toytrack import write_toy_track


def test_ctrl_c_during_a_model_call_stops_the_evaluation(tmp_path: Path) -> None:
    home = write_toy_track(tmp_path / "home")
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "SPEEDRUN_HOME": str(home), "SPEEDRUN_CACHE": str(tmp_path / "cache"), "PYTHONPATH": path}
    with FakeLLMServer() as server:
        server.default = answer("an answer that takes ten minutes", delay_s=600)
        cmd = [sys.executable, "-c", "from harness.cli.app import app; app()", "eval", "--track", "toy"]
        cmd += ["--model", "openai/slow-local-model", "--base-url", server.openai_base_url, "--nodes", "1"]
        cmd += ["--calibration-runs", "1", "--confirm-runs", "0", "--results-dir", str(tmp_path / "results")]
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 120
            while not server.requests:
                assert proc.poll() is None, proc.communicate()[0]
                assert time.monotonic() < deadline, "no model call started"
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=60)  # the server would answer in ten minutes
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130, out
    assert "re-run the same command to resume" in out
