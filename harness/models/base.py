"""The base of every API provider: what they all do, so that a provider module says only how its
SDK is called.

`APIModel` owns the `provider/model` name, the settings (validated, with one error text), the
key from the vendor's environment variables (and `.env`), whether the endpoint is the vendor's
(which needs a key) or another server's, the SDK client (created lazily, once, under a lock),
the connection limit, and retries. API keys live here and never reach an executor.

The contract itself (`Message`, `Completion`, `Model`, ...) is `harness.models.contract`, re-exported.
"""

from __future__ import annotations

import importlib
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, ClassVar
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import ConfigError
from harness.events import Event
from harness.models.contract import CallContext, Completion, Message, Model, ModelError, Usage
from harness.models.keys import env
from harness.models.limits import LimitSettings, connection_limit
from harness.models.pricing import load_prices, with_cost
from harness.models.retry import Failure, RetrySettings, call_with_retries, classify_sdk_error

__all__ = [
    "APIModel",
    "APISettings",
    "CallContext",
    "Completion",
    "Message",
    "Model",
    "ModelError",
    "Usage",
    "env",
    "parse_name",
    "validate_settings",
]

#: What a provider's `request` yields: pieces of the answer's text as they arrive, then the
#: whole answer (its usage without cost; the base prices it).
Chunk = str | Completion


class APISettings(RetrySettings, LimitSettings):
    """The settings every API provider takes (`--model-arg key=value`); providers add their own."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = None
    #: The cap on one answer's tokens.
    max_tokens: int | None = Field(default=None, ge=1)
    #: Seconds one request may take.
    timeout_s: float = Field(default=600.0, gt=0)
    #: A price table file replacing or adding to the shipped one.
    prices: str | None = None


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
        #: Injectable so tests can record waits instead of sleeping through them.
        self.sleep: Callable[[float], None] = time.sleep
        self._client: Any = None
        self._client_lock = threading.Lock()

    # ---- what a provider module says ------------------------------------------------------

    @abstractmethod
    def make_client(self, sdk: Any, credential: tuple[str, str] | None) -> Any:
        """The SDK client, with the SDK's own retries off (ours are seen and logged) and
        `credential` (variable, value) when one is set."""

    @abstractmethod
    def request(self, client: Any, messages: list[Message], context: CallContext) -> Iterator[Chunk]:
        """One request: yields the answer's text as it arrives, then the `Completion`."""

    # ---- what the base does -----------------------------------------------------------------

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
        with self._client_lock:
            if self._client is None:
                self.check_ready()
                self._client = self.make_client(self._import_sdk(), self.credential())
            return self._client

    def classify(self, exc: BaseException) -> Failure:
        return classify_sdk_error(exc, self._import_sdk())

    def generate(self, messages: list[Message], context: CallContext) -> Completion:
        client = self.client()
        limit = connection_limit(self.provider, str(client.base_url), self.config.max_connections)

        def attempt() -> Completion:
            with limit.slot():
                start = time.monotonic()
                final: Completion | None = None
                for chunk in self.request(client, messages, context):
                    if isinstance(chunk, Completion):
                        final = chunk
                if final is None:
                    raise ModelError("the provider returned no answer")
                usage = final.usage.model_copy(update={"calls": 1, "latency_s": time.monotonic() - start})
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

    def _emit(self, kind: str, message: str, context: CallContext, **data: Any) -> None:
        if self.on_event is not None:
            self.on_event(Event(kind, message, node=context.node_id, data=data))
