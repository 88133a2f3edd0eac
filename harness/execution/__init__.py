"""Executors: where and how a candidate script runs (local, docker, slurm)."""

from __future__ import annotations

from typing import Any

from harness.errors import ConfigError
from harness.execution.base import ExecResult, Executor, RunSpec

#: name -> "module:Class", imported lazily so a missing optional SDK only matters when used.
EXECUTORS = {
    "local": "harness.execution.local:LocalExecutor",
    "docker": "harness.execution.docker:DockerExecutor",
    "slurm": "harness.execution.slurm:SlurmExecutor",
}


def get_executor(name: str, **options: Any) -> Executor:
    import importlib

    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor {name!r}; choose one of: {', '.join(EXECUTORS)}")
    module, _, cls = EXECUTORS[name].partition(":")
    try:
        factory = getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"executor {name!r} is not available: {exc}") from None
    try:
        executor: Executor = factory(**options)
    except TypeError as exc:
        raise ConfigError(f"executor {name!r}: bad --executor-arg ({exc})") from None
    return executor


__all__ = ["EXECUTORS", "ExecResult", "Executor", "RunSpec", "get_executor"]
