"""Executors: where and how a candidate script runs (local, docker, slurm, or a plug-in)."""

from __future__ import annotations

from harness.execution.base import ExecResult, Executor, LineCallback, LogSink, RunSpec
from harness.execution.registry import ENTRY_POINT_GROUP, executor_class, executor_names, get_executor, register

__all__ = [
    "ENTRY_POINT_GROUP",
    "ExecResult",
    "Executor",
    "LineCallback",
    "LogSink",
    "RunSpec",
    "executor_class",
    "executor_names",
    "get_executor",
    "register",
]
