"""Scaffolds by name: the built-in presets, `module:Class`, `./file.py:Class`, and plug-ins
installed under the `speedrun.scaffolds` entry point.

    [project.entry-points."speedrun.scaffolds"]
    beam = "my_pkg.search:BeamSearch"
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import zlib
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, TypeVar

from harness.errors import ConfigError
from harness.search.api import Scaffold

S = TypeVar("S", bound=type[Scaffold])

_REGISTRY: dict[str, type[Scaffold]] = {}
ENTRY_POINT_GROUP = "speedrun.scaffolds"


def register(cls: S) -> S:
    """Class decorator: make a scaffold available by its `name` (to `--scaffold NAME` once the
    module defining it is imported; a plug-in package uses the entry point instead)."""
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__qualname__} needs a `name` class attribute to be registered")
    _REGISTRY[cls.name] = cls
    return cls


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _load_entry_point(ep: EntryPoint) -> type[Scaffold]:
    try:
        obj = ep.load()
    except Exception as exc:  # a third party's import error, reported with its name
        raise ConfigError(f"scaffold plug-in {ep.name!r} ({ep.value}) failed to load: {exc}") from None
    return _check(obj, f"scaffold plug-in {ep.name!r} ({ep.value})")


def scaffold_classes() -> dict[str, type[Scaffold]]:
    """Built-in and installed scaffolds, by name. Plug-ins that fail to load are left out
    (`broken_plugins` says why), so one broken package cannot hide the others."""
    found = dict(_REGISTRY)
    for name, ep in _entry_points().items():
        if name not in found:
            try:
                found[name] = _load_entry_point(ep)
            except ConfigError:
                continue
    return found


def broken_plugins() -> dict[str, str]:
    """Installed plug-ins that fail to load: name -> the reason."""
    out: dict[str, str] = {}
    for name, ep in _entry_points().items():
        if name not in _REGISTRY:
            try:
                _load_entry_point(ep)
            except ConfigError as exc:
                out[name] = str(exc)
    return out


def _check(obj: object, where: str) -> type[Scaffold]:
    if not (isinstance(obj, type) and issubclass(obj, Scaffold)):
        raise ConfigError(f"{where} is not a Scaffold subclass")
    return obj


def _load_file(target: str) -> Any:
    path = Path(target).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"scaffold file {target!r} not found")
    # One module per file path, so two files with the same name do not replace each other.
    mod_name = f"speedrun_user_scaffold_{zlib.crc32(str(path).encode()):08x}_{path.stem}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    file_spec = importlib.util.spec_from_file_location(mod_name, path)
    if file_spec is None or file_spec.loader is None:
        raise ConfigError(f"cannot import scaffold file {target!r}")
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[mod_name] = module  # dataclasses and pydantic look their module up while it runs
    try:
        file_spec.loader.exec_module(module)
    except Exception:
        del sys.modules[mod_name]
        raise
    return module


def load_scaffold_class(spec: str) -> type[Scaffold]:
    """Resolve `flat`, `my_pkg.module:MyScaffold`, `./my_scaffold.py:MyScaffold`, or the name
    of an installed plug-in."""
    if ":" in spec:
        target, _, attr = spec.rpartition(":")
        if target.endswith(".py") or "/" in target or "\\" in target:
            module = _load_file(target)
        else:
            try:
                module = importlib.import_module(target)
            except ImportError as exc:
                raise ConfigError(f"cannot import scaffold module {target!r}: {exc}") from None
        if not hasattr(module, attr):
            raise ConfigError(f"{target!r} has no attribute {attr!r}")
        return _check(getattr(module, attr), spec)
    if spec in _REGISTRY:
        return _REGISTRY[spec]
    eps = _entry_points()
    if spec in eps:
        return _load_entry_point(eps[spec])
    known = sorted(set(_REGISTRY) | set(eps))
    raise ConfigError(
        f"unknown scaffold {spec!r}; choose one of: {', '.join(known)} (or give module:Class or ./file.py:Class)"
    )


def get_scaffold(spec: str, params: dict[str, Any] | None = None) -> Scaffold:
    """An instance of the scaffold `spec` with `params` (unknown or invalid ones raise ConfigError)."""
    return load_scaffold_class(spec)(**(params or {}))
