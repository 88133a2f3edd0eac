"""What an LLM call cost, from the price table shipped in `prices.toml` and the user's own.

A user file has the shipped file's shape (`[provider]` tables of `"model" = { input = ...,
cached_input = ..., output = ... }`, USD per million tokens); its entries replace or add to
the shipped ones. It is named by `SPEEDRUN_PRICES` or the `prices` model argument.

A model the table does not know costs 0 and is counted in `Usage.unpriced_calls`, so reports
can say that a total is a lower bound instead of silently showing a cheap run.
"""

from __future__ import annotations

import logging
import re
import threading
import tomllib
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import ConfigError
from harness.models.contract import Model, Usage
from harness.models.keys import env

log = logging.getLogger(__name__)

PRICES_ENV = "SPEEDRUN_PRICES"

# Dated snapshots and moving aliases cost what their family costs.
_SNAPSHOT = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2}|latest)$")


class Price(BaseModel):
    """USD per million tokens. Without a cached-input price, cache hits cost the input price."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)

    def cost(self, usage: Usage) -> float:
        # `input_tokens` includes the cached ones, and `output_tokens` the reasoning ones.
        cached = min(usage.cached_tokens, usage.input_tokens)
        cached_price = self.input if self.cached_input is None else self.cached_input
        return (
            (usage.input_tokens - cached) * self.input + cached * cached_price + usage.output_tokens * self.output
        ) / 1e6


class PriceTable:
    """Prices by provider and model name."""

    def __init__(self, prices: Mapping[str, Mapping[str, Price]], updated: str | None = None) -> None:
        self.prices = {provider: dict(models) for provider, models in prices.items()}
        self.updated = updated

    @classmethod
    def from_toml(cls, text: str, source: str) -> PriceTable:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"price table {source} is not valid TOML: {exc}") from None
        prices: dict[str, dict[str, Price]] = {}
        for provider, models in data.items():
            if not isinstance(models, dict):
                continue  # top-level facts about the file: updated, currency, unit
            for model, entry in models.items():
                try:
                    price = Price.model_validate(entry)
                except ValidationError as exc:
                    first = exc.errors()[0]
                    where = ".".join(str(part) for part in first["loc"])
                    detail = f"{where}: {first['msg']}" if where else first["msg"]
                    raise ConfigError(f"price table {source}: {provider}.{model}: {detail}") from None
                prices.setdefault(provider, {})[model.lower()] = price
        updated = data.get("updated")
        return cls(prices, str(updated) if updated is not None else None)

    def merged(self, other: PriceTable) -> PriceTable:
        """This table with `other`'s entries replacing or adding to ours."""
        prices = {provider: dict(models) for provider, models in self.prices.items()}
        for provider, models in other.prices.items():
            prices.setdefault(provider, {}).update(models)
        return PriceTable(prices, other.updated or self.updated)

    def lookup(self, model: str) -> Price | None:
        """The price of `provider/name` (or a bare name, searched in every provider)."""
        provider, sep, name = model.partition("/")
        if not sep:
            provider, name = "", provider
        # A gateway's name (`deepseek/deepseek-r1`) ends with the vendor's.
        name = name.lower().rsplit("/", 1)[-1]
        candidates = [name]
        while _SNAPSHOT.search(candidates[-1]):
            candidates.append(_SNAPSHOT.sub("", candidates[-1]))
        tables = [self.prices.get(provider, {})] if provider else list(self.prices.values())
        for candidate in candidates:
            for table in tables:
                if candidate in table:
                    return table[candidate]
        return None

    def cost(self, model: str, usage: Usage) -> float | None:
        price = self.lookup(model)
        return None if price is None else price.cost(usage)


@lru_cache(maxsize=1)
def shipped_prices() -> PriceTable:
    text = resources.files("harness.models").joinpath("prices.toml").read_text()
    return PriceTable.from_toml(text, "prices.toml")


@lru_cache(maxsize=16)
def _user_prices(path: str) -> PriceTable:
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"price table {file} does not exist (from {PRICES_ENV} or the `prices` model argument)")
    return PriceTable.from_toml(file.read_text(), str(file))


def load_prices(user_file: str | Path | None = None) -> PriceTable:
    """The shipped table, overridden by `user_file` or else by the file `SPEEDRUN_PRICES` names."""
    path = str(user_file) if user_file else env(PRICES_ENV)
    table = shipped_prices()
    return table.merged(_user_prices(path)) if path else table


def price_override(model: str, spec: str) -> PriceTable:
    """A one-model table from `--price IN,OUT` (USD per million input and output tokens)."""
    parts = [p.strip() for p in spec.split(",")]
    try:
        price = Price(input=float(parts[0]), output=float(parts[1])) if len(parts) == 2 else None
    except (ValueError, ValidationError):
        price = None
    if price is None:
        raise ConfigError(f"--price wants IN,OUT in USD per million tokens, e.g. --price 0.5,1.5 (got {spec!r})")
    provider, sep, name = model.partition("/")
    return PriceTable({provider if sep else "": {(name if sep else provider).lower(): price}})


def require_price(model: Model, max_cost_usd: float | None) -> None:
    """Refuse a cost budget that cannot see a model's cost: an unpriced call counts as $0."""
    if max_cost_usd is not None and not model.priced:
        raise ConfigError(
            f"{model.spec} has no price, so --max-cost cannot limit its spending; give one with "
            "--price IN,OUT (USD per million input and output tokens; --price 0,0 for a free local server) "
            f"or add it to a price file named by {PRICES_ENV}"
        )


_warned: set[str] = set()
_warned_lock = threading.Lock()


def cost(model: str, usage: Usage, prices: PriceTable | None = None) -> float:
    """USD for `usage` of `model` (`provider/name`); 0.0 for a model the table does not know."""
    value = (prices or load_prices()).cost(model, usage)
    return 0.0 if value is None else value


def with_cost(model: str, usage: Usage, prices: PriceTable | None = None) -> Usage:
    """`usage` with its cost filled in, or its calls counted as unpriced."""
    value = (prices or load_prices()).cost(model, usage)
    if value is not None:
        return usage.model_copy(update={"cost_usd": value, "unpriced_calls": 0})
    with _warned_lock:
        first = model not in _warned
        _warned.add(model)
    if first:
        log.warning("no price for %s: its calls count as $0; add it to a file named by %s", model, PRICES_ENV)
    return usage.model_copy(update={"cost_usd": 0.0, "unpriced_calls": usage.calls})
