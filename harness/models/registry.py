"""`provider/model` names -> Model instances. Providers are imported only when used."""

from __future__ import annotations

import importlib
from typing import Any

from harness.errors import ConfigError
from harness.models.base import Model

#: provider -> "module:Class". Offline providers take no model name (`oracle`, `null`).
PROVIDERS: dict[str, str] = {
    "oracle": "harness.models.oracle:OracleModel",
    "null": "harness.models.oracle:NullModel",
    "replay": "harness.models.replay:ReplayModel",
    "openai": "harness.models.openai:OpenAIModel",
    "anthropic": "harness.models.anthropic:AnthropicModel",
}

#: Offline models that answer every prompt the same way (no sampling).
DETERMINISTIC: frozenset[str] = frozenset({"oracle", "null"})


def provider_names() -> list[str]:
    return list(PROVIDERS)


def get_model(spec: str, args: dict[str, Any] | None = None) -> Model:
    """Create the model named `spec` (`oracle`, `openai/o3-mini`, ...) with generation `args`."""
    provider = spec.split("/", 1)[0]
    if provider not in PROVIDERS:
        raise ConfigError(
            f"unknown model provider {provider!r} in {spec!r}; use one of: "
            + ", ".join(f"{p}/<model>" if p in ("openai", "anthropic") else p for p in PROVIDERS)
        )
    module, _, cls = PROVIDERS[provider].partition(":")
    try:
        factory = getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"provider {provider!r} is not available here ({exc}); pip install speedrun") from None
    model: Model = factory(spec, args)
    return model
