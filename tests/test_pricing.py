"""The shipped price table, user overrides, and what a call costs."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.models import Usage, get_model, keys
from harness.models import base as models_base
from harness.models.pricing import (
    PriceTable,
    cost,
    load_prices,
    price_override,
    require_price,
    shipped_prices,
    with_cost,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SPEEDRUN_PRICES", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(keys, "_dotenv_loaded", False)


def usage(input_tokens: int = 0, output_tokens: int = 0, cached: int = 0, reasoning: int = 0) -> Usage:
    return Usage(
        calls=1,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_tokens=cached,
        reasoning_tokens=reasoning,
    )


def test_shipped_table_covers_the_current_families_and_is_dated() -> None:
    table = shipped_prices()
    for model in (
        "openai/o3-mini",
        "openai/o3",
        "openai/o4-mini",
        "openai/gpt-4o",
        "openai/gpt-4.1",
        "openai/gpt-5",
        "openai/gpt-5-mini",
        "openai/gpt-5.5",
        "anthropic/claude-sonnet-4-6",
        "anthropic/claude-opus-4-1",
        "anthropic/claude-haiku-4-5",
        "anthropic/claude-opus-5-5",
        # The paper's models besides o3-mini, through compatible endpoints or a gateway.
        "anthropic/claude-3-7-sonnet-20250219",
        "openai/deepseek-reasoner",
        "openai/deepseek/deepseek-r1",
        "openai/gemini-2.5-pro",
    ):
        price = table.lookup(model)
        assert price is not None, model
        assert price.output >= price.input > 0
        assert price.cached_input is None or price.cached_input <= price.input
    raw = tomllib.loads((Path(models_base.__file__).parent / "prices.toml").read_text())
    assert raw["updated"] == table.updated and table.updated


def test_cost_charges_cache_hits_at_the_cached_rate() -> None:
    # gpt-4o: $2.50 input, $1.25 cached, $10 output per million.
    assert cost("openai/gpt-4o", usage(1_000_000, 0)) == pytest.approx(2.50)
    assert cost("openai/gpt-4o", usage(1_000_000, 0, cached=1_000_000)) == pytest.approx(1.25)
    assert cost("openai/gpt-4o", usage(0, 1_000_000)) == pytest.approx(10.00)
    # Reasoning tokens are already inside the output tokens: not charged twice.
    assert cost("openai/o3", usage(0, 1_000_000, reasoning=800_000)) == pytest.approx(8.00)


def test_snapshots_and_aliases_cost_what_their_family_costs() -> None:
    table = shipped_prices()
    assert table.lookup("openai/gpt-4o-2024-08-06") == table.lookup("openai/gpt-4o")
    assert table.lookup("anthropic/claude-sonnet-4-5-20250929") == table.lookup("anthropic/claude-sonnet-4-5")
    assert table.lookup("openai/codex-mini-latest") == table.lookup("openai/codex-mini")
    assert table.lookup("gpt-4.1") == table.lookup("openai/gpt-4.1")
    assert table.lookup("openai/GPT-4o") is not None
    # Another provider's table is not searched when a provider is named.
    assert table.lookup("openai/claude-sonnet-4-6") is None


def test_unknown_model_costs_zero_and_is_counted_as_unpriced() -> None:
    assert cost("openai/llama-3-70b", usage(1000, 1000)) == 0.0
    priced = with_cost("openai/llama-3-70b", usage(1000, 1000))
    assert priced.cost_usd == 0.0 and priced.unpriced_calls == 1
    known = with_cost("openai/gpt-4o", usage(1000, 1000))
    assert known.cost_usd > 0 and known.unpriced_calls == 0
    assert (priced + known).unpriced_calls == 1


def test_missing_cached_price_charges_the_input_price() -> None:
    table = PriceTable.from_toml('[openai]\n"x" = { input = 4.0, output = 8.0 }\n', "test")
    assert table.cost("openai/x", usage(1_000_000, 0, cached=1_000_000)) == pytest.approx(4.0)


def test_user_file_from_environment_overrides_and_extends(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    user = tmp_path / "mine.toml"
    user.write_text(
        'updated = "2030-01-01"\n'
        '[openai]\n"gpt-4o" = { input = 1.0, cached_input = 0.5, output = 2.0 }\n'
        '"qwen-coder" = { input = 0.0, output = 0.0 }\n'
    )
    monkeypatch.setenv("SPEEDRUN_PRICES", str(user))
    table = load_prices()
    assert table.cost("openai/gpt-4o", usage(1_000_000, 1_000_000)) == pytest.approx(3.0)
    assert table.cost("openai/qwen-coder", usage(5000, 5000)) == 0.0
    assert table.lookup("anthropic/claude-haiku-4-5") is not None
    assert table.updated == "2030-01-01"
    # A named file beats the environment's.
    other = tmp_path / "other.toml"
    other.write_text('[openai]\n"gpt-4o" = { input = 9.0, output = 9.0 }\n')
    assert load_prices(other).cost("openai/gpt-4o", usage(1_000_000, 0)) == pytest.approx(9.0)


def test_user_file_from_dotenv(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text('[anthropic]\n"claude-local" = { input = 1.0, output = 1.0 }\n')
    (tmp_path / ".env").write_text(f"SPEEDRUN_PRICES={tmp_path / 'p.toml'}\n")
    assert load_prices().lookup("anthropic/claude-local") is not None


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[openai\n", "not valid TOML"),
        ('[openai]\n"x" = { input = -1.0, output = 1.0 }\n', "openai.x: input"),
        ('[openai]\n"x" = { input = 1.0 }\n', "openai.x: output"),
        ('[openai]\n"x" = { input = 1.0, output = 1.0, cache = 2 }\n', "openai.x: cache"),
    ],
)
def test_bad_user_file_is_a_config_error(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / f"bad-{abs(hash(text))}.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words):
        load_prices(path)


def test_missing_user_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_prices(tmp_path / "nope.toml")


def test_the_price_flag_prices_one_model() -> None:
    table = price_override("openai/qwen2.5-coder", " 0.5, 1.5")
    assert table.cost("openai/qwen2.5-coder", usage(1_000_000, 1_000_000)) == pytest.approx(2.0)
    for bad in ("1", "a,b", "-1,2", "1,2,3", ""):
        with pytest.raises(ConfigError, match="--price wants IN,OUT"):
            price_override("openai/x", bad)


def test_a_cost_budget_needs_a_price() -> None:
    free = get_model("openai/qwen2.5-coder", {"base_url": "http://127.0.0.1:9/v1"})
    require_price(free, None)  # no budget: an unpriced model may run (its cost is reported as unknown)
    with pytest.raises(ConfigError, match=r"openai/qwen2.5-coder has no price.*--price IN,OUT"):
        require_price(free, 5.0)
    require_price(get_model("openai/qwen2.5-coder", {"base_url": "http://127.0.0.1:9/v1", "price": "0,0"}), 5.0)
    require_price(get_model("openai/o3-mini", {"base_url": "http://127.0.0.1:9/v1"}), 5.0)
    require_price(get_model("null"), 5.0)
