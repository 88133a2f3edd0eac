"""`anthropic/<model>`: Claude through the official SDK's Messages API, streamed.

Own settings: `thinking_budget` (tokens of extended thinking, at least 1024; the answer cap
then leaves room for it) and `effort` (low ... max, for models that take it). The key is
`ANTHROPIC_API_KEY` (or a bearer `ANTHROPIC_AUTH_TOKEN`), from the environment or `.env`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from harness.errors import ConfigError
from harness.models.base import APIModel, APISettings, CallContext, Chunk, Completion, Message, ModelError, Usage
from harness.models.registry import provider
from harness.models.retry import IncompleteResponse, not_a_stream

PLACEHOLDER_KEY = "no-key-needed"


class AnthropicSettings(APISettings):
    thinking_budget: int | None = Field(default=None, ge=1024)
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None


@provider
class AnthropicModel(APIModel):
    provider, settings_class, example = "anthropic", AnthropicSettings, "claude-sonnet-4-6"
    sdk, sdk_requirement = "anthropic", "anthropic>=0.40"
    key_variables = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
    base_url_variable, vendor_domain = "ANTHROPIC_BASE_URL", "anthropic.com"

    def __init__(self, name: str, args: dict[str, Any] | None = None) -> None:
        super().__init__(name, args)
        budget, cap = self.config.thinking_budget, self.config.max_tokens
        if budget is not None and cap is not None and budget >= cap:
            raise ConfigError(f"{name}: max_tokens ({cap}) must exceed thinking_budget ({budget})")

    def reasoning_allowance(self) -> int:
        return self.config.thinking_budget or 0

    def make_client(self, sdk: Any, credential: tuple[str, str] | None) -> Any:
        variable, value = credential or ("", PLACEHOLDER_KEY)
        token = variable == "ANTHROPIC_AUTH_TOKEN"
        # An explicit credential keeps the SDK from looking for profiles on disk; its timeout is a
        # backstop behind the call watch (harness.models.calls).
        return sdk.Anthropic(
            api_key=None if token else value,
            auth_token=value if token else None,
            base_url=self.base_url,
            max_retries=0,
            timeout=self.config.stall_s + 10,
        )

    def _params(self, messages: list[Message], max_tokens: int) -> dict[str, Any]:
        omit, cfg = self._import_sdk().omit, self.config
        budget = cfg.thinking_budget
        if budget is not None and max_tokens <= budget:
            raise ModelError(f"the context window leaves {max_tokens} tokens, not more than thinking_budget {budget}")
        # The top-level `system` parameter, which every Messages API server understands.
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        return {
            "model": self.model_name,
            "max_tokens": max_tokens,
            "messages": [m.model_dump() for m in messages if m.role != "system"],
            "system": system or omit,
            "thinking": {"type": "enabled", "budget_tokens": budget} if budget is not None else omit,
            "output_config": {"effort": cfg.effort} if cfg.effort is not None else omit,
        }

    def request(self, client: Any, messages: list[Message], context: CallContext, max_tokens: int) -> Iterator[Chunk]:
        params = self._params(messages, max_tokens)
        if not self.config.stream:
            message = client.messages.create(**params)
        else:
            with client.messages.stream(**params) as stream:
                events = 0
                for event in stream:
                    events += 1
                    if event.type == "content_block_delta":
                        delta = event.delta
                        piece = delta.text if delta.type == "text_delta" else getattr(delta, "thinking", "")
                        if piece:
                            yield piece
                if not events:
                    raise not_a_stream(stream.response.headers.get("content-type", ""))
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

    def count_tokens(self, client: Any, messages: list[Message]) -> int | None:
        params = self._params(messages, 1_000_000)
        keep = ("model", "messages", "system", "thinking")
        return int(client.messages.count_tokens(**{k: params[k] for k in keep}).input_tokens)
