"""Executors by name: the built-ins and plug-ins, all found through the `speedrun.executors`
entry point (the built-ins are registered in speedrun's own pyproject, like a third party's).

    [project.entry-points."speedrun.executors"]
    k8s = "my_pkg.k8s:KubernetesExecutor"

An executor module is imported only when its name is asked for, so a missing optional SDK
(submitit for `slurm`) matters only to those who use it. `register` makes a class defined
in a script or a test available by its `name` without an entry point.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

from harness.errors import ConfigError
from harness.execution.base import Executor

E = TypeVar("E", bound=type[Executor])

ENTRY_POINT_GROUP = "speedrun.executors"
_REGISTRY: dict[str, type[Executor]] = {}


def register(cls: E) -> E:
    """Class decorator: make an executor available as `--executor <cls.name>`."""
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__qualname__} needs a `name` class attribute to be registered")
    _REGISTRY[cls.name] = cls
    return cls


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def executor_names() -> list[str]:
    """Every executor that can be asked for, without importing any of them."""
    return sorted(set(_REGISTRY) | set(_entry_points()))


def executor_class(name: str) -> type[Executor]:
    if name in _REGISTRY:
        return _REGISTRY[name]
    eps = _entry_points()
    if name not in eps:
        known = executor_names()
        if not known:
            raise ConfigError(
                f"unknown executor {name!r}: no executors are registered; is speedrun installed (`pip install -e .`)?"
            )
        raise ConfigError(f"unknown executor {name!r}; choose one of: {', '.join(known)}")
    try:
        obj = eps[name].load()
    except ModuleNotFoundError as exc:
        raise ConfigError(f"executor {name!r} is not available: {exc}") from None
    except Exception as exc:  # a plug-in's own import error, named
        raise ConfigError(f"executor plug-in {name!r} ({eps[name].value}) failed to load: {exc}") from None
    if not (isinstance(obj, type) and issubclass(obj, Executor)):
        raise ConfigError(f"executor plug-in {name!r} ({eps[name].value}) is not an Executor subclass")
    return obj


def get_executor(name: str, **options: Any) -> Executor:
    """An instance of executor `name` with `options` (`--executor-arg key=value`)."""
    factory = executor_class(name)
    try:
        return factory(**options)
    except TypeError as exc:
        raise ConfigError(f"executor {name!r}: bad --executor-arg ({exc})") from None
