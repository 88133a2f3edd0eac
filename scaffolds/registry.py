"""Scaffolds by name: the built-in presets, `module:Class`, `./file.py:Class`, and plug-ins
installed under the `speedrun.scaffolds` entry point."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TypeVar

from harness.errors import ConfigError
from scaffolds.base import Scaffold

S = TypeVar("S", bound=type[Scaffold])

_REGISTRY: dict[str, type[Scaffold]] = {}
ENTRY_POINT_GROUP = "speedrun.scaffolds"


def register(cls: S) -> S:
    """Class decorator: make a scaffold available by its `name`."""
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__qualname__} needs a `name` class attribute to be registered")
    _REGISTRY[cls.name] = cls
    return cls


def _builtins() -> None:
    importlib.import_module("scaffolds.greedy")


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def scaffold_classes() -> dict[str, type[Scaffold]]:
    """Built-in and installed scaffolds, by name. A broken plug-in is reported, not fatal."""
    _builtins()
    found = dict(_REGISTRY)
    for name, ep in _entry_points().items():
        if name not in found:
            try:
                found[name] = _check(ep.load(), f"entry point {name!r}")
            except Exception as exc:  # a third party's bug must not break `scaffolds list`
                raise ConfigError(f"scaffold plug-in {name!r} ({ep.value}) failed to load: {exc}") from None
    return found


def _check(obj: object, where: str) -> type[Scaffold]:
    if not (isinstance(obj, type) and issubclass(obj, Scaffold)):
        raise ConfigError(f"{where} is not a Scaffold subclass")
    return obj


def load_scaffold_class(spec: str) -> type[Scaffold]:
    """Resolve `flat`, `my_pkg.module:MyScaffold` or `./my_scaffold.py:MyScaffold`."""
    if ":" in spec:
        target, _, attr = spec.rpartition(":")
        if target.endswith(".py") or "/" in target:
            path = Path(target).expanduser().resolve()
            if not path.is_file():
                raise ConfigError(f"scaffold file {target!r} not found")
            mod_name = f"speedrun_user_scaffold_{path.stem}"
            file_spec = importlib.util.spec_from_file_location(mod_name, path)
            if file_spec is None or file_spec.loader is None:
                raise ConfigError(f"cannot import scaffold file {target!r}")
            module = importlib.util.module_from_spec(file_spec)
            sys.modules[mod_name] = module
            file_spec.loader.exec_module(module)
        else:
            try:
                module = importlib.import_module(target)
            except ImportError as exc:
                raise ConfigError(f"cannot import scaffold module {target!r}: {exc}") from None
        if not hasattr(module, attr):
            raise ConfigError(f"{target!r} has no attribute {attr!r}")
        return _check(getattr(module, attr), spec)
    classes = scaffold_classes()
    if spec not in classes:
        raise ConfigError(f"unknown scaffold {spec!r}; choose one of: {', '.join(sorted(classes))}")
    return classes[spec]


def get_scaffold(spec: str, params: dict[str, Any] | None = None) -> Scaffold:
    return load_scaffold_class(spec)(**(params or {}))
