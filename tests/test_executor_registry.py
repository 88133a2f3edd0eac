"""Executors are plug-ins like scaffolds: a decorator, and the `speedrun.executors` entry point
(through which the built-ins are found too)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ConfigError
from harness.execution import ExecResult, Executor, LineCallback, RunSpec, executor_names, get_executor, register
from harness.execution.local import LocalExecutor


def test_the_builtins_come_from_entry_points() -> None:
    assert {"local", "docker", "slurm"} <= set(executor_names())
    assert isinstance(get_executor("local"), LocalExecutor)


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown executor 'nope'; choose one of: .*docker.*local.*slurm"):
        get_executor("nope")


def test_bad_options_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="bad --executor-arg"):
        get_executor("local", no_such_option=1)


def test_a_decorated_class_is_found_by_name(tmp_path: Path) -> None:
    @register
    class Echo(Executor):
        name = "echo-test"

        def run(self, spec: RunSpec, on_line: LineCallback | None = None) -> ExecResult:
            spec.log_path.write_text(" ".join(spec.command))
            return ExecResult(exit_code=0, log_path=spec.log_path, executor=self.name, sandboxed=False)

    ex = get_executor("echo-test")
    res = ex.run(RunSpec(command=["a", "b"], workspace=tmp_path, log_path=tmp_path / "log", time_limit_s=1))
    assert res.ok and (tmp_path / "log").read_text() == "a b"
    assert "echo-test" in executor_names()


def test_a_third_party_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "site"
    (pkg / "my_exec.py").parent.mkdir(parents=True)
    (pkg / "my_exec.py").write_text(
        "from harness.execution import ExecResult, Executor\n"
        "class Remote(Executor):\n"
        "    name = 'remote'\n"
        "    def __init__(self, host: str = 'h') -> None:\n"
        "        self.host = host\n"
        "    def run(self, spec, on_line=None):\n"
        "        return ExecResult(exit_code=0, log_path=spec.log_path, executor=self.name, sandboxed=True)\n"
    )
    dist = pkg / "my_exec-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-exec\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[speedrun.executors]\nremote = my_exec:Remote\nbroken = no_such_module_x:Nothing\n"
    )
    monkeypatch.syspath_prepend(str(pkg))
    assert {"remote", "broken"} <= set(executor_names())
    ex: Any = get_executor("remote", host="cluster")
    assert ex.host == "cluster" and ex.name == "remote"
    with pytest.raises(ConfigError, match="executor 'broken' is not available"):
        get_executor("broken")
    sys.modules.pop("my_exec", None)
