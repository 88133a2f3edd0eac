"""`openai/<model>`: OpenAI's chat completions, or any server that speaks them (vLLM, llama.cpp, Ollama).

Settings (`--model-arg key=value`), besides the shared ones of `harness.models.base.APISettings`:
`temperature` (default 0.7: some spread between parallel drafts, still precise edits) for models
that are not reasoning models; `reasoning_effort` (default "medium") for reasoning models (o1,
o3, o4-mini, the gpt-5 family, or any model with `reasoning=true`), which are sent no
temperature and get the answer cap as `max_completion_tokens`; `seed`.
A server other than api.openai.com may run without `OPENAI_API_KEY`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pydantic import Field

from harness.errors import ConfigError
from harness.models.base import APIModel, APISettings, CallContext, Chunk, Completion, Message, Usage
from harness.models.registry import provider
from harness.models.retry import IncompleteResponse

DEFAULT_TEMPERATURE = 0.7
DEFAULT_REASONING_EFFORT = "medium"
# Local servers ignore the key, but the SDK refuses to start without one.
PLACEHOLDER_KEY = "no-key-needed"

# o1, o3-mini, o4-mini, gpt-5, gpt-5.6-sol, gpt-6-*...; the "chat" variants are not reasoning models.
_REASONING_NAME = re.compile(r"^(o\d+|gpt-([5-9]|\d\d))(?!.*-chat)", re.IGNORECASE)


def is_reasoning_model(name: str) -> bool:
    return bool(_REASONING_NAME.match(name))


class OpenAISettings(APISettings):
    temperature: float | None = Field(default=None, ge=0, le=2)
    reasoning_effort: str | None = None
    #: Force (or deny) reasoning-model treatment, e.g. for gpt-oss behind vLLM.
    reasoning: bool | None = None
    seed: int | None = None


@provider
class OpenAIModel(APIModel):
    provider = "openai"
    settings_class = OpenAISettings
    sdk, sdk_requirement = "openai", "openai>=1.50"
    key_variables = ("OPENAI_API_KEY",)
    base_url_variable = "OPENAI_BASE_URL"
    vendor_domain = "openai.com"
    example = "o3-mini"

    def __init__(self, name: str, args: dict[str, Any] | None = None) -> None:
        super().__init__(name, args)
        cfg = self.config
        if cfg.reasoning is False and cfg.reasoning_effort is not None:
            raise ConfigError(f"{name}: reasoning_effort needs a reasoning model; drop reasoning=false")
        auto = is_reasoning_model(self.model_name) or cfg.reasoning_effort is not None
        self.reasoning = cfg.reasoning if cfg.reasoning is not None else auto
        if self.reasoning and cfg.temperature is not None and cfg.reasoning is None:
            raise ConfigError(
                f"{name} is a reasoning model: it takes reasoning_effort, not temperature"
                " (drop temperature, or set reasoning=false if it is not one)"
            )

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        if self.reasoning:
            out["reasoning_effort"] = self.config.reasoning_effort or DEFAULT_REASONING_EFFORT
        else:
            out["temperature"] = DEFAULT_TEMPERATURE if self.config.temperature is None else self.config.temperature
        return out

    def make_client(self, sdk: Any, credential: tuple[str, str] | None) -> Any:
        key = credential[1] if credential else PLACEHOLDER_KEY
        return sdk.OpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.config.timeout_s)

    def request(self, client: Any, messages: list[Message], context: CallContext) -> Iterator[Chunk]:
        cfg, omit = self.config, self._import_sdk().omit
        params: dict[str, Any] = {"model": self.model_name, "messages": [m.model_dump() for m in messages]}
        if self.reasoning:
            params["reasoning_effort"] = cfg.reasoning_effort or DEFAULT_REASONING_EFFORT
            params["temperature"] = cfg.temperature if cfg.temperature is not None else omit
            params["max_completion_tokens"] = cfg.max_tokens if cfg.max_tokens is not None else omit
        else:
            params["temperature"] = DEFAULT_TEMPERATURE if cfg.temperature is None else cfg.temperature
            params["max_tokens"] = cfg.max_tokens if cfg.max_tokens is not None else omit
        params["seed"] = cfg.seed if cfg.seed is not None else omit
        response = client.chat.completions.create(**params)
        if not response.choices:
            raise IncompleteResponse("no choices in the completion")
        choice, used = response.choices[0], response.usage
        usage = Usage()
        if used is not None:
            details_in, details_out = used.prompt_tokens_details, used.completion_tokens_details
            usage = Usage(
                input_tokens=used.prompt_tokens,
                output_tokens=used.completion_tokens,
                cached_tokens=(details_in.cached_tokens or 0) if details_in else 0,
                reasoning_tokens=(details_out.reasoning_tokens or 0) if details_out else 0,
            )
        yield Completion(
            text=choice.message.content or choice.message.refusal or "",
            usage=usage,
            model=f"{self.provider}/{response.model or self.model_name}",
            finish_reason=choice.finish_reason,
        )
