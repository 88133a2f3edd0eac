"""The local executor: limits that kill the whole process group, a scrubbed environment, logs."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import pytest

from harness.execution import bwrap
from harness.execution.base import RunSpec
from harness.execution.environment import candidate_env
from harness.execution.local import LocalExecutor
from tests.attack_support import alive_with_token


def _spec(tmp_path: Path, code: str, limit: float = 30, env: dict[str, str] | None = None) -> RunSpec:
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    (ws / "train.py").write_text(code)
    return RunSpec(
        command=[sys.executable, "train.py"],
        workspace=ws,
        log_path=tmp_path / "run.log",
        env=env or {},
        time_limit_s=limit,
    )


def test_runs_streams_and_logs(tmp_path: Path) -> None:
    lines: list[str] = []
    res = LocalExecutor().run(_spec(tmp_path, "for i in range(3): print('step', i, flush=True)\n"), lines.append)
    assert res.ok and res.exit_code == 0 and res.sandboxed == (bwrap.unavailable() is None)
    assert lines == ["step 0", "step 1", "step 2"]
    assert (tmp_path / "run.log").read_text() == "step 0\nstep 1\nstep 2\n"


def test_exit_status_reported(tmp_path: Path) -> None:
    res = LocalExecutor().run(_spec(tmp_path, "raise SystemExit(3)\n"))
    assert res.exit_code == 3 and not res.ok and "status 3" in res.describe_failure()


@pytest.mark.parametrize("sandbox", ["auto", "none"])
def test_time_limit_kills_whole_group(tmp_path: Path, sandbox: str) -> None:
    token = f"speedrun-test-{uuid.uuid4().hex}"
    code = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', {token!r}])\n"
        "print('started', flush=True)\n"
        "time.sleep(600)\n"
    )
    t0 = time.monotonic()
    res = LocalExecutor(sandbox=sandbox).run(_spec(tmp_path, code, limit=2))
    assert res.timed_out and time.monotonic() - t0 < 20
    assert "started" in (tmp_path / "run.log").read_text()
    assert not alive_with_token(token)


def test_api_keys_never_reach_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    monkeypatch.setenv("HF_TOKEN", "hf-secret")
    code = "import os; print(sorted(os.environ))\n"
    res = LocalExecutor().run(_spec(tmp_path, code, env={"NANOGPT_VAL_TOKENS": "5", "MY_API_KEY": "x"}))
    log = (tmp_path / "run.log").read_text()
    assert res.ok and "NANOGPT_VAL_TOKENS" in log
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HF_TOKEN", "MY_API_KEY"):
        assert name not in log
    assert "MY_API_KEY" not in candidate_env({"MY_API_KEY": "x"})


def test_log_flood_is_cut_and_killed(tmp_path: Path) -> None:
    code = "import sys\nwhile True:\n    sys.stdout.write('x' * 1000 + '\\n')\n"
    res = LocalExecutor(max_log_bytes=200_000).run(_spec(tmp_path, code, limit=30))
    assert res.error is not None and "log exceeded" in res.error
    assert (tmp_path / "run.log").stat().st_size < 260_000


def test_missing_program(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "")
    spec.command = ["/nonexistent/python"]
    res = LocalExecutor().run(spec)
    assert res.error and "could not start" in res.error


def test_the_harness_clocks_the_run_with_its_descendants(tmp_path: Path) -> None:
    """`cpu_s` is measured, not reported: it includes a grandchild's CPU time, and the script
    printing a time of its own changes nothing."""
    burn = "import time\nwhile time.process_time() < 0.6: pass\n"
    code = (
        "import subprocess, sys\n"
        f"subprocess.run([sys.executable, '-c', {burn!r}], check=True)\n"
        "print('step:1/1 val_loss:1.0 train_time:1ms step_avg:1.00ms', flush=True)\n"
    )
    res = LocalExecutor().run(_spec(tmp_path, code))
    assert res.ok
    assert res.cpu_s is not None and res.cpu_s >= 0.6
    assert res.wall_s > 0 and res.wall_time_s == res.wall_s


def test_a_raising_line_callback_is_a_warning_not_a_timeout(tmp_path: Path) -> None:
    def broken(line: str) -> None:
        raise RuntimeError(f"renderer bug on {line!r}")

    res = LocalExecutor().run(_spec(tmp_path, "for k in range(3): print('line', k, flush=True)\n"), broken)
    assert res.ok and not res.timed_out
    assert "renderer bug on 'line 0'" in res.warnings[0]
    assert (tmp_path / "run.log").read_text() == "line 0\nline 1\nline 2\n"


def test_a_huge_line_without_newline_is_cut_for_the_callback(tmp_path: Path) -> None:
    lines: list[str] = []
    code = "import sys\nsys.stdout.write('x' * 5_000_000)\nsys.stdout.flush()\nprint()\nprint('after')\n"
    res = LocalExecutor().run(_spec(tmp_path, code), lines.append)
    assert res.ok and lines[-1] == "after"
    assert max(len(line) for line in lines) < 70_000


def test_declared_outputs_come_back_and_nothing_else(tmp_path: Path) -> None:
    """A sandboxed run's workspace vanishes with it: only the declared outputs are copied out,
    regular files only, not through a link."""
    code = (
        "import os\n"
        "open('model.bin', 'wb').write(b'weights')\n"
        "os.makedirs('sub', exist_ok=True)\n"
        "open('sub/extra.bin', 'wb').write(b'x')\n"
        "os.symlink('/etc/hostname', 'linked.bin')\n"
        "open('undeclared.bin', 'wb').write(b'y')\n"
    )
    spec = _spec(tmp_path, code)
    spec.outputs = ["model.bin", "sub/extra.bin", "linked.bin", "never-written.bin"]
    res = LocalExecutor().run(spec)
    assert res.ok, (tmp_path / "run.log").read_text()
    ws = tmp_path / "ws"
    assert (ws / "model.bin").read_bytes() == b"weights"
    if res.sandboxed:
        assert (ws / "sub" / "extra.bin").read_bytes() == b"x"
        assert not (ws / "linked.bin").exists() and not (ws / "undeclared.bin").exists()
        assert not (ws / "never-written.bin").exists()


def test_an_output_name_must_stay_in_the_workspace(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="output"):
        _spec(tmp_path, "").model_copy(update={}).model_validate(
            {**_spec(tmp_path, "").model_dump(), "outputs": ["../escape.bin"]}
        )
