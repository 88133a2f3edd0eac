"""The base of every API provider: what they all do, so that a provider module says only how its
SDK is called.

`APIModel` owns the `provider/model` name, the settings (validated, with one error text), the
key from the vendor's environment variables (and `.env`), whether the endpoint is the vendor's
(which needs a key) or another server's, the SDK client (created lazily, once, under a lock),
the connection limit and the per-minute pacing, the context window and the cap on one answer,
the watch over a call in flight (progress, stall, time limit, cancel), and retries. Whatever an
SDK raises ends that call as a `ModelError`. API keys live here and never reach an executor.

The contract itself (`Message`, `Completion`, `Model`, ...) is `harness.models.contract`, re-exported.
"""

from __future__ import annotations

import importlib
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, ClassVar
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import ConfigError, SpeedrunError
from harness.events import Event
from harness.models import context as ctx_window
from harness.models.calls import PROGRESS_EVERY_S, STALL_NOTICE_S, CallWatch, Progress, Stalled
from harness.models.contract import CallContext, Completion, Message, Model, ModelError, Usage
from harness.models.keys import env
from harness.models.limits import LimitSettings, PaceSettings, connection_limit, pacer
from harness.models.pricing import load_prices, price_override, with_cost
from harness.models.retry import Failure, IncompleteResponse, RetrySettings, call_with_retries, classify_sdk_error

__all__ = [
    "APIModel",
    "APISettings",
    "CallContext",
    "Chunk",
    "Completion",
    "Message",
    "Model",
    "ModelError",
    "Usage",
    "env",
    "parse_name",
    "validate_settings",
]

#: What a provider's `request` yields: text as it arrives (the answer's, or reasoning: it shows
#: progress), then the whole answer (its usage without cost; the base prices it).
Chunk = str | Completion

#: Defaults for one call, suited to a local server on a CPU (about 10 tokens/s): an answer
#: of several thousand tokens takes many minutes there.
DEFAULT_CALL_TIME_LIMIT_S = 1800.0
DEFAULT_STALL_S = 600.0


class APISettings(RetrySettings, LimitSettings, PaceSettings):
    """The settings every API provider takes (`--model-arg key=value`); providers add their own."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = None
    #: The cap on one answer's tokens; unset, it fits the current script and a plan.
    max_tokens: int | None = Field(default=None, ge=1)
    #: The model's context window, when the server and the vendor table do not know it.
    context_window: int | None = Field(default=None, ge=1)
    #: Wall-clock seconds one call may take, its whole answer included.
    timeout_s: float = Field(default=DEFAULT_CALL_TIME_LIMIT_S, gt=0)
    #: Seconds without a byte (before the first token too) before the call is retried.
    stall_s: float = Field(default=DEFAULT_STALL_S, gt=0)
    #: Stream answers (progress, stall detection); off for a gateway that cannot stream.
    stream: bool = True
    #: A price table file replacing or adding to the shipped one.
    prices: str | None = None
    #: This model's price, `IN,OUT` USD per million tokens (`--price`).
    price: str | None = None


def parse_name(spec: str, provider: str, example: str) -> str:
    """The model part of `provider/model`."""
    head, _, name = spec.partition("/")
    if head != provider or not name:
        raise ConfigError(f"name the model as {provider}/<model>, e.g. {provider}/{example} (got {spec!r})")
    return name


def validate_settings(cls: type[BaseModel], args: dict[str, Any], spec: str) -> Any:
    """`args` (strings from the command line, or values) as the provider's settings, or the
    first thing wrong with them as one line."""
    try:
        return cls.model_validate(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        if first["type"] == "extra_forbidden":
            raise ConfigError(f"{spec} has no setting {key!r} (--model-arg {key}=...)") from None
        raise ConfigError(f"{spec}: bad --model-arg {key}={first.get('input')!r}: {first['msg']}") from None


class APIModel(Model):
    """A model behind an HTTP API, reached with its vendor's official SDK."""

    settings_class: ClassVar[type[APISettings]] = APISettings
    #: The SDK's import name, and what to `pip install` when it is missing.
    sdk: ClassVar[str]
    sdk_requirement: ClassVar[str]
    #: The environment variables that may hold a credential, in order; the first is the one named.
    key_variables: ClassVar[tuple[str, ...]]
    base_url_variable: ClassVar[str]
    #: Requests to this domain (or its subdomains) need a key; another server may not.
    vendor_domain: ClassVar[str]
    example: ClassVar[str]

    def __init__(self, name: str, args: dict[str, Any] | None = None) -> None:
        super().__init__(name, args)
        self.model_name = parse_name(name, self.provider, self.example)
        self.config = validate_settings(self.settings_class, self.args, name)
        self.base_url: str | None = self.config.base_url or env(self.base_url_variable)
        self.prices = load_prices(self.config.prices)
        if self.config.price:
            self.prices = self.prices.merged(price_override(name, self.config.price))
        #: Injectable so tests can record waits instead of sleeping through them (pacing reads
        #: `clock`, so a test's sleep should move it), and see progress without waiting for it.
        self.sleep: Callable[[float], None] = time.sleep
        self.clock: Callable[[], float] = time.monotonic
        self.progress_every_s, self.stall_notice_s = PROGRESS_EVERY_S, STALL_NOTICE_S
        self._client: Any = None
        self._lock = threading.Lock()
        self.windows = ctx_window.WindowBook(name, self.model_name, self.config.context_window)
        self._watches: set[CallWatch] = set()

    # ---- what a provider module says ------------------------------------------------------

    @abstractmethod
    def make_client(self, sdk: Any, credential: tuple[str, str] | None) -> Any:
        """The SDK client, with the SDK's own retries off (ours are seen and logged) and
        `credential` (variable, value) when one is set."""

    @abstractmethod
    def request(self, client: Any, messages: list[Message], context: CallContext, max_tokens: int) -> Iterator[Chunk]:
        """One request for at most `max_tokens`: yields text as it arrives, then the `Completion`."""

    def server_window(self, client: Any) -> int | None:
        """The context window the server reports, if it does."""
        return None

    def count_tokens(self, client: Any, messages: list[Message]) -> int | None:
        """The prompt's tokens by the server's tokenizer, if it offers one."""
        return None

    def reasoning_allowance(self) -> int:
        """Tokens of hidden reasoning the answer cap must leave room for."""
        return 0

    # ---- keys, settings, the client --------------------------------------------------------

    @property
    def uses_vendor(self) -> bool:
        """Whether requests go to the vendor itself, which needs a key, rather than to another server."""
        if not self.base_url:
            return True
        host = urlparse(self.base_url).hostname or ""
        return host == self.vendor_domain or host.endswith("." + self.vendor_domain)

    @property
    def priced(self) -> bool:
        return self.prices.lookup(self.name) is not None

    def credential(self) -> tuple[str, str] | None:
        for variable in self.key_variables:
            value = env(variable)
            if value:
                return variable, value
        return None

    def check_ready(self) -> None:
        self._import_sdk()
        if self.uses_vendor and self.credential() is None:
            raise ConfigError(
                f"{self.key_variables[0]} is not set: export it or put it in .env"
                " (or point --base-url at a compatible server)"
            )

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = self.config.model_dump(exclude_none=True)
        out["model"] = self.model_name
        if self.base_url:
            out["base_url"] = self.base_url
        return out

    def _import_sdk(self) -> ModuleType:
        try:
            return importlib.import_module(self.sdk)
        except ImportError:
            raise ConfigError(
                f"{self.provider}/<model> needs the {self.sdk} SDK: pip install '{self.sdk_requirement}'"
            ) from None

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self.check_ready()
                self._client = self.make_client(self._import_sdk(), self.credential())
            return self._client

    def classify(self, exc: BaseException) -> Failure:
        if isinstance(exc, Stalled):
            return Failure(str(exc), retryable=True)
        return classify_sdk_error(exc, self._import_sdk())

    # ---- one call ----------------------------------------------------------------------------

    def generate(self, messages: list[Message], context: CallContext) -> Completion:
        try:
            client = self.client()
        except SpeedrunError as exc:
            raise ModelError(str(exc)) from exc
        cap = self.config.max_tokens or ctx_window.default_answer_cap(context.current_code)
        cap += self.reasoning_allowance() if self.config.max_tokens is None else 0
        served, count = lambda: self.server_window(client), lambda: self.count_tokens(client, messages)
        try:
            return self._call(client, messages, context, self.windows.plan(messages, cap, served, count))
        except ModelError as exc:
            learned = ctx_window.window_from_error(str(exc))
            if learned is None or not self.windows.learn(learned):
                raise
        # The server named its window: ask again only if the prompt fits it, with the cap that does.
        max_tokens = self.windows.plan(messages, cap, served, count)
        self._emit("model_status", f"context window is {learned} tokens: asking again for {max_tokens}", context)
        return self._call(client, messages, context, max_tokens)

    def _call(self, client: Any, messages: list[Message], context: CallContext, max_tokens: int) -> Completion:
        endpoint = str(client.base_url)
        limit = connection_limit(self.provider, endpoint, self.config.max_connections)
        pace = pacer(self.provider, endpoint, self.config, self.clock)
        reserve = ctx_window.estimate_prompt(messages) + max_tokens

        def attempt() -> Completion:
            place = None
            if pace is not None:
                place = pace.pace(reserve, self.sleep, lambda s: self._emit("model_status", _pacing(s), context))
            with limit.slot():
                start = time.monotonic()
                cfg = self.config
                watch = CallWatch(
                    cfg.timeout_s,
                    cfg.stall_s,
                    lambda p: self._progress(p, context),
                    self.progress_every_s,
                    self.stall_notice_s,
                )
                with self._watched(watch):
                    final = watch.run(lambda: self.request(client, messages, context, max_tokens))
            if not final.text.strip():
                if final.finish_reason in ("length", "max_tokens"):
                    raise ModelError(
                        f"the answer was empty: its cap of {max_tokens} tokens went on reasoning; "
                        "raise --max-answer-tokens",
                        permanent=True,
                    )
                raise IncompleteResponse("the answer was empty")
            usage = final.usage.model_copy(update={"calls": 1, "latency_s": time.monotonic() - start})
            if pace is not None and place is not None:
                pace.settle(place, usage.total_tokens)
            return final.model_copy(update={"usage": usage})

        completion = call_with_retries(
            attempt,
            classify=self.classify,
            settings=self.config,
            what=f"{self.name} ({context.describe()})",
            sleep=self.sleep,
            on_status=lambda msg: self._emit("model_status", msg, context),
        )
        return completion.model_copy(update={"usage": with_cost(self.name, completion.usage, self.prices)})

    # ---- progress and cancelling -----------------------------------------------------------------

    def cancel(self) -> None:
        with self._lock:
            for watch in self._watches:
                watch.cancelled.set()

    @contextmanager
    def _watched(self, watch: CallWatch) -> Iterator[None]:
        with self._lock:
            self._watches.add(watch)
        try:
            yield
        finally:
            with self._lock:
                self._watches.discard(watch)

    def _progress(self, progress: Progress, context: CallContext) -> None:
        self._emit(
            "model_progress",
            progress.describe(),
            context,
            tokens=progress.tokens,
            elapsed_s=round(progress.elapsed_s, 1),
            silent_s=None if progress.silent_s is None else round(progress.silent_s, 1),
            purpose=context.purpose,
            attempt=context.attempt,
        )

    def _emit(self, kind: str, message: str, context: CallContext, **data: Any) -> None:
        if self.on_event is not None:
            self.on_event(Event(kind, message, node=context.node_id, data=data))


def _pacing(wait_s: float) -> str:
    return f"pacing: waiting {wait_s:.0f} s for the per-minute limits"
