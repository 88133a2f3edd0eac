"""`anthropic/<model>`: Claude through the official SDK's Messages API.

Answers are streamed: the SDK refuses long non-streamed requests (large `max_tokens`, thinking
budgets), and a stream shows a dropped connection instead of waiting out a timeout.

Settings (`--model-arg key=value`):

- `max_tokens` (default 8192, or the thinking budget plus 8192): the API requires a cap.
- `thinking_budget`: tokens of extended thinking (at least 1024, below `max_tokens`).
- `effort` (low, medium, high, xhigh, max): how hard the model works, for models that take it;
  unset, the model's default applies.
- `base_url` (else `ANTHROPIC_BASE_URL`), `timeout_s` (default 600), and the shared
  `max_retries`, `retry_base_s`, `retry_max_wait_s`, `max_connections`, `prices`.

The key is `ANTHROPIC_API_KEY` (or a bearer `ANTHROPIC_AUTH_TOKEN`), from the environment or `.env`.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from pydantic import ConfigDict, Field, ValidationError

from harness.errors import ConfigError
from harness.models.base import CodingContext, Completion, Message, Model, Usage, env
from harness.models.limits import LimitSettings, connection_limit
from harness.models.pricing import load_prices, with_cost
from harness.models.retry import (
    Failure,
    IncompleteResponse,
    RetrySettings,
    call_with_retries,
    common_failure,
    describe_exception,
    status_failure,
)

if TYPE_CHECKING:
    import anthropic
    from anthropic.types import Message as AnthropicMessage
    from anthropic.types import MessageParam

DEFAULT_MAX_TOKENS = 8192
KEY_VARIABLE = "ANTHROPIC_API_KEY"
TOKEN_VARIABLE = "ANTHROPIC_AUTH_TOKEN"
PLACEHOLDER_KEY = "no-key-needed"


class AnthropicSettings(RetrySettings, LimitSettings):
    model_config = ConfigDict(extra="forbid")

    base_url: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    thinking_budget: int | None = Field(default=None, ge=1024)
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    timeout_s: float = Field(default=600.0, gt=0)
    prices: str | None = None


class AnthropicModel(Model):
    provider = "anthropic"

    def __init__(self, name: str, args: dict[str, Any] | None = None) -> None:
        super().__init__(name, args)
        head, _, self.model_name = name.partition("/")
        if head != self.provider or not self.model_name:
            raise ConfigError(f"name the model as anthropic/<model>, e.g. anthropic/claude-sonnet-4-6 (got {name!r})")
        try:
            self.config = AnthropicSettings.model_validate(self.args)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(part) for part in first["loc"])
            if first["type"] == "extra_forbidden":
                raise ConfigError(f"{name} has no setting {key!r} (--model-arg {key}=...)") from None
            raise ConfigError(f"{name}: bad --model-arg {key}={first.get('input')!r}: {first['msg']}") from None
        cfg = self.config
        self.max_tokens = cfg.max_tokens or DEFAULT_MAX_TOKENS + (cfg.thinking_budget or 0)
        if cfg.thinking_budget is not None and cfg.thinking_budget >= self.max_tokens:
            raise ConfigError(
                f"{name}: max_tokens ({self.max_tokens}) must exceed thinking_budget ({cfg.thinking_budget})"
            )
        self.base_url = cfg.base_url or env("ANTHROPIC_BASE_URL")
        self.prices = load_prices(cfg.prices)
        #: Injectable so tests can record waits instead of sleeping through them.
        self.sleep = time.sleep
        self._client: anthropic.Anthropic | None = None
        self._client_lock = threading.Lock()

    @property
    def uses_anthropic(self) -> bool:
        """Whether requests go to Anthropic itself, which needs a key, rather than to another server."""
        if not self.base_url:
            return True
        host = urlparse(self.base_url).hostname or ""
        return host == "api.anthropic.com" or host.endswith(".anthropic.com")

    def check_ready(self) -> None:
        if self.uses_anthropic and not (env(KEY_VARIABLE) or env(TOKEN_VARIABLE)):
            raise ConfigError(f"{KEY_VARIABLE} is not set: export it or put it in .env")

    def settings(self) -> dict[str, Any]:
        out = self.config.model_dump(exclude_none=True)
        out.update(model=self.model_name, max_tokens=self.max_tokens)
        if self.base_url:
            out["base_url"] = self.base_url
        return out

    def client(self) -> anthropic.Anthropic:
        with self._client_lock:
            if self._client is None:
                self.check_ready()
                import anthropic

                key = env(KEY_VARIABLE)
                token = None if key else env(TOKEN_VARIABLE)
                self._client = anthropic.Anthropic(
                    # An explicit credential keeps the SDK from looking for profiles on disk.
                    api_key=key or (None if token else PLACEHOLDER_KEY),
                    auth_token=token,
                    base_url=self.base_url,
                    # Retries are ours (harness.models.retry), so each one is seen and logged.
                    max_retries=0,
                    timeout=self.config.timeout_s,
                )
            return self._client

    def generate(self, messages: list[Message], context: CodingContext) -> Completion:
        client = self.client()
        limit = connection_limit(self.provider, str(client.base_url), self.config.max_connections)

        def attempt() -> tuple[AnthropicMessage, float]:
            with limit.slot():
                start = time.monotonic()
                message = self._stream(client, messages)
                if message.stop_reason is None:
                    raise IncompleteResponse("the stream ended before the message did")
                return message, time.monotonic() - start

        message, latency = call_with_retries(
            attempt,
            classify=classify,
            settings=self.config,
            what=f"{self.name} (task {context.task_id}, node {context.node_id})",
            sleep=self.sleep,
            on_status=self.on_status,
        )
        used = message.usage
        cache_read = used.cache_read_input_tokens or 0
        usage = Usage(
            calls=1,
            # Anthropic counts cache reads and writes apart from `input_tokens`; ours include them.
            input_tokens=used.input_tokens + cache_read + (used.cache_creation_input_tokens or 0),
            output_tokens=used.output_tokens,
            cached_tokens=cache_read,
            reasoning_tokens=used.output_tokens_details.thinking_tokens if used.output_tokens_details else 0,
            latency_s=latency,
        )
        return Completion(
            text="".join(block.text for block in message.content if block.type == "text"),
            usage=with_cost(self.name, usage, self.prices),
            model=f"{self.provider}/{message.model or self.model_name}",
            finish_reason=message.stop_reason,
        )

    def _stream(self, client: anthropic.Anthropic, messages: list[Message]) -> AnthropicMessage:
        from anthropic import omit

        # The top-level `system` parameter, which every Messages API server understands.
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        turns: list[MessageParam] = []
        for m in messages:
            if m.role == "user":
                turns.append({"role": "user", "content": m.content})
            elif m.role == "assistant":
                turns.append({"role": "assistant", "content": m.content})
        budget, effort = self.config.thinking_budget, self.config.effort
        with client.messages.stream(
            model=self.model_name,
            max_tokens=self.max_tokens,
            messages=turns,
            system=system or omit,
            thinking={"type": "enabled", "budget_tokens": budget} if budget is not None else omit,
            output_config={"effort": effort} if effort is not None else omit,
        ) as stream:
            return stream.get_final_message()


def classify(exc: BaseException) -> Failure | None:
    import anthropic
    import httpx2

    if isinstance(exc, anthropic.APIStatusError):
        return status_failure(exc.status_code, exc.response.headers, exc.body)
    if isinstance(exc, anthropic.APITimeoutError):
        return Failure("request timed out", retryable=True)
    if isinstance(exc, anthropic.APIConnectionError):
        return Failure(f"connection failed: {describe_exception(exc)}", retryable=True)
    # Once a stream has begun, transport errors reach us unwrapped.
    if isinstance(exc, httpx2.TimeoutException):
        return Failure("stream timed out", retryable=True)
    if isinstance(exc, httpx2.TransportError):
        return Failure(f"connection dropped mid-response: {describe_exception(exc)}", retryable=True)
    if isinstance(exc, anthropic.APIResponseValidationError):
        return Failure("malformed response (does not match the API's schema)", retryable=True)
    failure = common_failure(exc)
    if failure is None and isinstance(exc, anthropic.AnthropicError):
        failure = Failure(describe_exception(exc), retryable=False)
    return failure
