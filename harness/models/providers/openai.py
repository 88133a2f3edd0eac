"""`openai/<model>`: OpenAI's chat completions, or any server that speaks them (vLLM, llama.cpp, Ollama).

Own settings: `temperature` (default 0.7) for models that are not reasoning models;
`reasoning_effort` (default "medium") for reasoning ones (o1, o3, o4-mini, the gpt-5 family, or
`reasoning=true`), which get no temperature and the cap as `max_completion_tokens`; `seed`.
A server other than api.openai.com may run without `OPENAI_API_KEY`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pydantic import Field

from harness.errors import ConfigError
from harness.models.base import APIModel, APISettings, CallContext, Chunk, Completion, Message, Usage
from harness.models.context import estimate_prompt, estimate_tokens
from harness.models.registry import provider
from harness.models.retry import IncompleteResponse, not_a_stream
from harness.models.servers import ServerTokenizer, served_window

DEFAULT_TEMPERATURE, DEFAULT_REASONING_EFFORT = 0.7, "medium"
#: Hidden reasoning counts against a reasoning model's cap: room for it on top of the answer's.
REASONING_TOKENS = 16384
PLACEHOLDER_KEY = "no-key-needed"  # local servers ignore the key; the SDK wants one
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
    provider, settings_class, example = "openai", OpenAISettings, "o3-mini"
    sdk, sdk_requirement = "openai", "openai>=1.50"
    key_variables, base_url_variable, vendor_domain = ("OPENAI_API_KEY",), "OPENAI_BASE_URL", "openai.com"

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
        self._tokenizer = ServerTokenizer()

    def settings(self) -> dict[str, Any]:
        cfg, out = self.config, super().settings()
        if self.reasoning:
            out["reasoning_effort"] = cfg.reasoning_effort or DEFAULT_REASONING_EFFORT
        else:
            out["temperature"] = DEFAULT_TEMPERATURE if cfg.temperature is None else cfg.temperature
        return out

    def reasoning_allowance(self) -> int:
        return REASONING_TOKENS if self.reasoning else 0

    def make_client(self, sdk: Any, credential: tuple[str, str] | None) -> Any:
        key = credential[1] if credential else PLACEHOLDER_KEY
        # The SDK's timeout is a backstop behind the call watch (harness.models.calls).
        return sdk.OpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.config.stall_s + 10)

    def request(self, client: Any, messages: list[Message], context: CallContext, max_tokens: int) -> Iterator[Chunk]:
        cfg, omit = self.config, self._import_sdk().omit
        params: dict[str, Any] = {"model": self.model_name, "messages": [m.model_dump() for m in messages]}
        if self.reasoning:
            params["reasoning_effort"] = cfg.reasoning_effort or DEFAULT_REASONING_EFFORT
            params["temperature"] = cfg.temperature if cfg.temperature is not None else omit
            params["max_completion_tokens"] = max_tokens
        else:
            params["temperature"] = DEFAULT_TEMPERATURE if cfg.temperature is None else cfg.temperature
            params["max_tokens"] = max_tokens
        params["seed"] = cfg.seed if cfg.seed is not None else omit
        if not cfg.stream:
            response = client.chat.completions.create(**params)
            if not response.choices:
                raise IncompleteResponse("no choices in the completion")
            choice = response.choices[0]
            text = choice.message.content or choice.message.refusal or ""
            yield self._completion(text, response.usage, response.model, choice.finish_reason, messages)
            return
        parts: list[str] = []
        used, model, finish, events = None, None, None, 0
        with client.chat.completions.create(**params, stream=True, stream_options={"include_usage": True}) as stream:
            for chunk in stream:
                events += 1
                used, model = chunk.usage or used, chunk.model or model
                for choice in chunk.choices[:1]:
                    delta, finish = choice.delta, choice.finish_reason or finish
                    piece = delta.content or delta.refusal or ""
                    extra = delta.model_extra or {}
                    # vLLM, DeepSeek and llama.cpp stream a reasoning model's thinking beside the answer.
                    thought = extra.get("reasoning_content") or extra.get("reasoning") or ""
                    parts.append(piece)
                    if piece or thought:
                        yield piece or str(thought)
            if not events:
                raise not_a_stream(stream.response.headers.get("content-type", ""))
        if finish is None:
            raise IncompleteResponse("the stream ended before the answer did" if parts else "no choices in the stream")
        yield self._completion("".join(parts), used, model, finish, messages)

    def _completion(
        self, text: str, used: Any, model: str | None, finish: str | None, asked: list[Message]
    ) -> Completion:
        if used is None:  # a server that does not report usage: estimated, so budgets still count
            usage = Usage(input_tokens=estimate_prompt(asked), output_tokens=estimate_tokens(text))
        else:
            details_in, details_out = used.prompt_tokens_details, used.completion_tokens_details
            usage = Usage(
                input_tokens=used.prompt_tokens,
                output_tokens=used.completion_tokens,
                cached_tokens=(details_in.cached_tokens or 0) if details_in else 0,
                reasoning_tokens=(details_out.reasoning_tokens or 0) if details_out else 0,
            )
        return Completion(
            text=text, usage=usage, model=f"{self.provider}/{model or self.model_name}", finish_reason=finish
        )

    def server_window(self, client: Any) -> int | None:
        # OpenAI's own model list has no window (the vendor table does); other servers' may.
        return None if self.uses_vendor else served_window(client, self.model_name)

    def count_tokens(self, client: Any, messages: list[Message]) -> int | None:
        return None if self.uses_vendor else self._tokenizer.count(client, self.model_name, messages)
