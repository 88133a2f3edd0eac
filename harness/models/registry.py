"""`provider/model` names -> Model instances.

A provider is a `Model` subclass registered under its `provider` name, by the `@provider`
decorator once its module is imported, or by a package's entry point, which is how the
built-in ones are found too (so a third party's provider plugs in exactly like them):

    [project.entry-points."speedrun.models"]
    mistral = "my_pkg.mistral:MistralModel"

Modules are imported only when their provider is asked for.
"""

from __future__ import annotations

import threading
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

from harness.errors import ConfigError
from harness.models.contract import Model

ENTRY_POINT_GROUP = "speedrun.models"
M = TypeVar("M", bound=type[Model])

_REGISTRY: dict[str, type[Model]] = {}
_lock = threading.Lock()


def provider(cls: M) -> M:
    """Class decorator: make `cls` the model class for `cls.provider/<model>` names."""
    name = getattr(cls, "provider", None)
    if not name or "/" in name:
        raise TypeError(f"{cls.__qualname__} needs a `provider` class attribute without '/' to be registered")
    with _lock:
        _REGISTRY[name] = cls
    return cls


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def provider_names() -> list[str]:
    """The providers known here: registered ones and installed entry points."""
    return sorted(set(_REGISTRY) | set(_entry_points()))


def provider_class(name: str) -> type[Model]:
    with _lock:
        if name in _REGISTRY:
            return _REGISTRY[name]
    eps = _entry_points()
    if name not in eps:
        known = provider_names()
        if not known:
            raise ConfigError(
                "no model providers are installed: the installed speedrun predates its `speedrun.models` "
                "entry points; reinstall it (pip install -e .)"
            )
        raise ConfigError(f"unknown model provider {name!r}; use one of: {', '.join(_usage(p) for p in known)}")
    try:
        obj = eps[name].load()
    except ImportError as exc:
        raise ConfigError(f"model provider {name!r} ({eps[name].value}) is not available here: {exc}") from None
    except Exception as exc:  # a third party's broken module, reported with its name
        raise ConfigError(f"model provider {name!r} ({eps[name].value}) failed to load: {exc}") from None
    if not (isinstance(obj, type) and issubclass(obj, Model)):
        raise ConfigError(f"model provider {name!r} ({eps[name].value}) is not a Model subclass")
    with _lock:
        _REGISTRY.setdefault(name, obj)
        return _REGISTRY[name]


def _usage(name: str) -> str:
    """How a provider is named on the command line: `openai/<model>`, or just `oracle`."""
    try:
        cls = provider_class(name)
    except ConfigError:
        return name
    return f"{name}/<model>" if cls.takes_model_name else name


def get_model(spec: str, args: dict[str, Any] | None = None) -> Model:
    """Create the model named `spec` (`oracle`, `openai/o3-mini`, ...) with generation `args`."""
    return provider_class(spec.split("/", 1)[0])(spec, args)


def is_deterministic(spec: str) -> bool:
    """Whether the model answers every prompt the same way (the offline `oracle` and `null`)."""
    try:
        return provider_class(spec.split("/", 1)[0]).deterministic
    except ConfigError:
        return False
