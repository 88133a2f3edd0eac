"""`openai/<model>`: OpenAI's chat completions, or any server that speaks them (vLLM, llama.cpp, Ollama).

Settings (`--model-arg key=value`):

- `base_url`: an OpenAI-compatible endpoint (else `OPENAI_BASE_URL`, else OpenAI's). A server
  other than api.openai.com may run without `OPENAI_API_KEY`.
- `temperature` (default 0.7: some spread between parallel drafts, still precise edits),
  for models that are not reasoning models.
- `reasoning_effort` (default "medium"), for reasoning models: o1, o3, o4-mini, the gpt-5
  family, or any model with `reasoning=true`. They are sent no temperature.
- `max_tokens`: the cap on one answer, sent as `max_completion_tokens` to reasoning models
  (whose hidden reasoning counts against it) and as `max_tokens` to the rest, which every
  compatible server understands. Unset, the server's default applies.
- `seed`, `timeout_s` (one request, default 600), and the shared `max_retries`,
  `retry_base_s`, `retry_max_wait_s`, `max_connections`, `prices`.
"""

from __future__ import annotations

import re
import threading
import time
from typing import TYPE_CHECKING, Any, cast
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
    import openai
    from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
    from openai.types.shared import ReasoningEffort

DEFAULT_TEMPERATURE = 0.7
DEFAULT_REASONING_EFFORT = "medium"
KEY_VARIABLE = "OPENAI_API_KEY"
# Local servers ignore the key, but the SDK refuses to start without one.
PLACEHOLDER_KEY = "no-key-needed"

# o1, o3-mini, o4-mini, gpt-5, gpt-5.6-sol, gpt-6-*...; the "chat" variants are not reasoning models.
_REASONING_NAME = re.compile(r"^(o\d+|gpt-([5-9]|\d\d))(?!.*-chat)", re.IGNORECASE)


def is_reasoning_model(name: str) -> bool:
    return bool(_REASONING_NAME.match(name))


class OpenAISettings(RetrySettings, LimitSettings):
    model_config = ConfigDict(extra="forbid")

    base_url: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    reasoning_effort: str | None = None
    #: Force (or deny) reasoning-model treatment, e.g. for gpt-oss behind vLLM.
    reasoning: bool | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    timeout_s: float = Field(default=600.0, gt=0)
    prices: str | None = None


class OpenAIModel(Model):
    provider = "openai"

    def __init__(self, name: str, args: dict[str, Any] | None = None) -> None:
        super().__init__(name, args)
        self.model_name = _model_name(name, self.provider)
        try:
            self.config = OpenAISettings.model_validate(self.args)
        except ValidationError as exc:
            raise ConfigError(_settings_error(name, exc)) from None
        self.base_url = self.config.base_url or env("OPENAI_BASE_URL")
        self.reasoning = self._resolve_reasoning()
        self.prices = load_prices(self.config.prices)
        #: Injectable so tests can record waits instead of sleeping through them.
        self.sleep = time.sleep
        self._client: openai.OpenAI | None = None
        self._client_lock = threading.Lock()

    def _resolve_reasoning(self) -> bool:
        cfg = self.config
        if cfg.reasoning is False and cfg.reasoning_effort is not None:
            raise ConfigError(f"{self.name}: reasoning_effort needs a reasoning model; drop reasoning=false")
        reasoning = (
            cfg.reasoning
            if cfg.reasoning is not None
            else is_reasoning_model(self.model_name) or cfg.reasoning_effort is not None
        )
        if reasoning and cfg.temperature is not None and cfg.reasoning is None:
            raise ConfigError(
                f"{self.name} is a reasoning model: it takes reasoning_effort, not temperature"
                " (drop temperature, or set reasoning=false if it is not one)"
            )
        return reasoning

    @property
    def uses_openai(self) -> bool:
        """Whether requests go to OpenAI itself, which needs a key, rather than to a local server."""
        if not self.base_url:
            return True
        host = urlparse(self.base_url).hostname or ""
        return host == "api.openai.com" or host.endswith(".openai.com")

    def check_ready(self) -> None:
        if self.uses_openai and not env(KEY_VARIABLE):
            raise ConfigError(
                f"{KEY_VARIABLE} is not set: export it or put it in .env"
                " (or point --base-url at an OpenAI-compatible server)"
            )

    def settings(self) -> dict[str, Any]:
        cfg = self.config
        out = cfg.model_dump(exclude_none=True)
        out["model"] = self.model_name
        if self.base_url:
            out["base_url"] = self.base_url
        if self.reasoning:
            out["reasoning_effort"] = cfg.reasoning_effort or DEFAULT_REASONING_EFFORT
        else:
            out["temperature"] = DEFAULT_TEMPERATURE if cfg.temperature is None else cfg.temperature
        return out

    def client(self) -> openai.OpenAI:
        with self._client_lock:
            if self._client is None:
                self.check_ready()
                import openai

                self._client = openai.OpenAI(
                    api_key=env(KEY_VARIABLE) or PLACEHOLDER_KEY,
                    base_url=self.base_url,
                    # Retries are ours (harness.models.retry), so each one is seen and logged.
                    max_retries=0,
                    timeout=self.config.timeout_s,
                )
            return self._client

    def generate(self, messages: list[Message], context: CodingContext) -> Completion:
        client = self.client()
        limit = connection_limit(self.provider, str(client.base_url), self.config.max_connections)

        def attempt() -> tuple[ChatCompletion, float]:
            with limit.slot():
                start = time.monotonic()
                response = self._create(client, messages)
                if not response.choices:
                    raise IncompleteResponse("no choices in the completion")
                return response, time.monotonic() - start

        response, latency = call_with_retries(
            attempt,
            classify=classify,
            settings=self.config,
            what=f"{self.name} (task {context.task_id}, node {context.node_id})",
            sleep=self.sleep,
            on_status=self.on_status,
        )
        choice = response.choices[0]
        usage = Usage(calls=1, latency_s=latency)
        if response.usage is not None:
            details_in = response.usage.prompt_tokens_details
            details_out = response.usage.completion_tokens_details
            usage = usage.model_copy(
                update={
                    "input_tokens": response.usage.prompt_tokens,
                    "output_tokens": response.usage.completion_tokens,
                    "cached_tokens": (details_in.cached_tokens or 0) if details_in else 0,
                    "reasoning_tokens": (details_out.reasoning_tokens or 0) if details_out else 0,
                }
            )
        return Completion(
            text=choice.message.content or choice.message.refusal or "",
            usage=with_cost(self.name, usage, self.prices),
            model=f"{self.provider}/{response.model or self.model_name}",
            finish_reason=choice.finish_reason,
        )

    def _create(self, client: openai.OpenAI, messages: list[Message]) -> ChatCompletion:
        from openai import omit

        cfg = self.config
        if self.reasoning:
            return client.chat.completions.create(
                model=self.model_name,
                messages=[_message_param(m) for m in messages],
                # Passed as given: a newer level than this SDK knows should reach the API.
                reasoning_effort=cast("ReasoningEffort", cfg.reasoning_effort or DEFAULT_REASONING_EFFORT),
                temperature=cfg.temperature if cfg.temperature is not None else omit,
                max_completion_tokens=cfg.max_tokens if cfg.max_tokens is not None else omit,
                seed=cfg.seed if cfg.seed is not None else omit,
            )
        return client.chat.completions.create(
            model=self.model_name,
            messages=[_message_param(m) for m in messages],
            temperature=DEFAULT_TEMPERATURE if cfg.temperature is None else cfg.temperature,
            max_tokens=cfg.max_tokens if cfg.max_tokens is not None else omit,
            seed=cfg.seed if cfg.seed is not None else omit,
        )


def classify(exc: BaseException) -> Failure | None:
    import openai

    if isinstance(exc, openai.APIStatusError):
        return status_failure(exc.status_code, exc.response.headers, exc.body)
    if isinstance(exc, openai.APITimeoutError):
        return Failure("request timed out", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        return Failure(f"connection failed: {describe_exception(exc)}", retryable=True)
    if isinstance(exc, openai.APIResponseValidationError):
        return Failure("malformed response (does not match the API's schema)", retryable=True)
    failure = common_failure(exc)
    if failure is None and isinstance(exc, openai.OpenAIError):
        failure = Failure(describe_exception(exc), retryable=False)
    return failure


def _message_param(message: Message) -> ChatCompletionMessageParam:
    if message.role == "system":
        return {"role": "system", "content": message.content}
    if message.role == "assistant":
        return {"role": "assistant", "content": message.content}
    return {"role": "user", "content": message.content}


def _model_name(spec: str, provider: str) -> str:
    head, _, name = spec.partition("/")
    if head != provider or not name:
        raise ConfigError(f"name the model as {provider}/<model>, e.g. {provider}/o3-mini (got {spec!r})")
    return name


def _settings_error(spec: str, exc: ValidationError) -> str:
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{spec} has no setting {key!r} (--model-arg {key}=...)"
    return f"{spec}: bad --model-arg {key}={first.get('input')!r}: {first['msg']}"
