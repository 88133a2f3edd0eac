"""`anthropic/<model>`: Claude through the official SDK's Messages API, streamed.

Settings (`--model-arg key=value`), besides the shared ones of `harness.models.base.APISettings`:
`thinking_budget` (tokens of extended thinking, at least 1024, below `max_tokens`, which then
defaults to the budget plus the usual cap) and `effort` (low ... max, for models that take it).
The key is `ANTHROPIC_API_KEY` (or a bearer `ANTHROPIC_AUTH_TOKEN`), from the environment or `.env`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from harness.errors import ConfigError
from harness.models.base import APIModel, APISettings, CallContext, Chunk, Completion, Message, Usage
from harness.models.registry import provider
from harness.models.retry import IncompleteResponse

DEFAULT_MAX_TOKENS = 8192
PLACEHOLDER_KEY = "no-key-needed"


class AnthropicSettings(APISettings):
    thinking_budget: int | None = Field(default=None, ge=1024)
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None


@provider
class AnthropicModel(APIModel):
    provider = "anthropic"
    settings_class = AnthropicSettings
    sdk, sdk_requirement = "anthropic", "anthropic>=0.40"
    key_variables = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
    base_url_variable = "ANTHROPIC_BASE_URL"
    vendor_domain = "anthropic.com"
    example = "claude-sonnet-4-6"

    def __init__(self, name: str, args: dict[str, Any] | None = None) -> None:
        super().__init__(name, args)
        budget = self.config.thinking_budget
        self.max_tokens = self.config.max_tokens or DEFAULT_MAX_TOKENS + (budget or 0)
        if budget is not None and budget >= self.max_tokens:
            raise ConfigError(f"{name}: max_tokens ({self.max_tokens}) must exceed thinking_budget ({budget})")

    def settings(self) -> dict[str, Any]:
        return super().settings() | {"max_tokens": self.max_tokens}

    def make_client(self, sdk: Any, credential: tuple[str, str] | None) -> Any:
        variable, value = credential or ("", PLACEHOLDER_KEY)
        token = variable == "ANTHROPIC_AUTH_TOKEN"
        # An explicit credential keeps the SDK from looking for profiles on disk.
        return sdk.Anthropic(
            api_key=None if token else value,
            auth_token=value if token else None,
            base_url=self.base_url,
            max_retries=0,
            timeout=self.config.timeout_s,
        )

    def request(self, client: Any, messages: list[Message], context: CallContext) -> Iterator[Chunk]:
        omit, cfg = self._import_sdk().omit, self.config
        # The top-level `system` parameter, which every Messages API server understands.
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        turns = [m.model_dump() for m in messages if m.role != "system"]
        budget = cfg.thinking_budget
        with client.messages.stream(
            model=self.model_name,
            max_tokens=self.max_tokens,
            messages=turns,
            system=system or omit,
            thinking={"type": "enabled", "budget_tokens": budget} if budget is not None else omit,
            output_config={"effort": cfg.effort} if cfg.effort is not None else omit,
        ) as stream:
            message = stream.get_final_message()
        if message.stop_reason is None:
            raise IncompleteResponse("the stream ended before the message did")
        used = message.usage
        cache_read = used.cache_read_input_tokens or 0
        yield Completion(
            text="".join(block.text for block in message.content if block.type == "text"),
            usage=Usage(
                # Anthropic counts cache reads and writes apart from `input_tokens`; ours include them.
                input_tokens=used.input_tokens + cache_read + (used.cache_creation_input_tokens or 0),
                output_tokens=used.output_tokens,
                cached_tokens=cache_read,
                reasoning_tokens=used.output_tokens_details.thinking_tokens if used.output_tokens_details else 0,
            ),
            model=f"{self.provider}/{message.model or self.model_name}",
            finish_reason=message.stop_reason,
        )
