"""Prices and usage: what a model call costs in USD."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from asm.errors import ConfigError
from asm.spend.cost import PRICES, Price, Usage, parse_prices, price_for

SONNET = Price(input=3.0, output=15.0, cache_write=3.75, cache_read=0.30)


# -- price_for -------------------------------------------------------------------------------------


def test_price_for_an_exact_id() -> None:
    assert price_for("claude-sonnet-4-6") == SONNET
    assert price_for("claude-haiku-4-5") == Price(1.0, 5.0, 1.25, 0.10)


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-opus-4-20250514", "claude-opus-4"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
    ],
)
def test_price_for_a_dated_id_takes_the_longest_family(model: str, family: str) -> None:
    assert price_for(model) == PRICES[family]


# Anthropic's pricing page lists a lower cache-hit price for these (footnoted there).
CACHE_READ_EXCEPTIONS = {"claude-fable-5-1", "claude-mythos-5-1"}


def test_cache_prices_follow_anthropics_multipliers() -> None:
    for name, price in PRICES.items():
        assert price.cache_write == pytest.approx(price.input * 1.25), name
        if name not in CACHE_READ_EXCEPTIONS:
            assert price.cache_read == pytest.approx(price.input * 0.10), name


def test_an_override_wins_over_the_table() -> None:
    cheap = Price(1, 2, 3, 4)

    assert price_for("claude-sonnet-4-6", {"claude-sonnet-4-6": cheap}) == cheap


def test_an_override_of_a_family_prices_its_dated_ids() -> None:
    cheap = Price(1, 2, 3, 4)

    assert price_for("claude-sonnet-4-5-20250929", {"claude-sonnet-4-5": cheap}) == cheap


def test_an_override_prices_an_unknown_model() -> None:
    assert price_for("house-model", {"house-model": Price(0, 0, 0, 0)}) == Price(0, 0, 0, 0)


@pytest.mark.parametrize("model", ["gpt-5", "claude-sonnet", "claude-sonnet-46", "sonnet-4-6"])
def test_an_unknown_model_raises_config_error_naming_asm_model(model: str) -> None:
    with pytest.raises(ConfigError, match="ASM_MODEL") as caught:
        price_for(model)

    assert "ASM_PRICES" in str(caught.value)


def test_an_unknown_model_is_named_with_the_variable_that_asked_for_it() -> None:
    with pytest.raises(ConfigError, match="^ASM_MODEL_PO='gpt-5' has no known price; add it to ASM_PRICES$"):
        price_for("gpt-5", variable="ASM_MODEL_PO")


# -- Usage -----------------------------------------------------------------------------------------


def test_cost_counts_all_four_token_kinds() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=100_000, cache_write_tokens=200_000,
                  cache_read_tokens=2_000_000)

    # 3.00 input + 1.50 output + 0.75 cache writes + 0.60 cache reads
    assert usage.cost(SONNET) == pytest.approx(5.85)


def test_each_token_kind_has_its_own_price() -> None:
    price = Price(1, 10, 100, 1000)

    assert Usage(input_tokens=1_000_000).cost(price) == pytest.approx(1)
    assert Usage(output_tokens=1_000_000).cost(price) == pytest.approx(10)
    assert Usage(cache_write_tokens=1_000_000).cost(price) == pytest.approx(100)
    assert Usage(cache_read_tokens=1_000_000).cost(price) == pytest.approx(1000)


def test_no_tokens_cost_nothing() -> None:
    assert Usage().cost(SONNET) == 0
    assert Usage().total_tokens == 0


def test_usages_add_up() -> None:
    total = Usage(1, 2, 3, 4) + Usage(10, 20, 30, 40)

    assert total == Usage(11, 22, 33, 44)
    assert total.total_tokens == 110


def test_saved_by_cache_weighs_reads_against_the_write_premium() -> None:
    usage = Usage(cache_write_tokens=1_000_000, cache_read_tokens=10_000_000)

    # reads save 10 x (3.00 - 0.30) = 27.00; writes cost 1 x (3.75 - 3.00) = 0.75 extra
    assert usage.saved_by_cache(SONNET) == pytest.approx(26.25)


def test_saved_by_cache_is_negative_when_writes_were_never_read() -> None:
    assert Usage(cache_write_tokens=1_000_000).saved_by_cache(SONNET) == pytest.approx(-0.75)


def test_saved_by_cache_equals_the_difference_to_uncached_cost() -> None:
    usage = Usage(input_tokens=5_000, output_tokens=700, cache_write_tokens=12_000, cache_read_tokens=90_000)
    uncached = Usage(input_tokens=5_000 + 12_000 + 90_000, output_tokens=700)

    assert usage.saved_by_cache(SONNET) == pytest.approx(uncached.cost(SONNET) - usage.cost(SONNET))


def test_from_api_reads_every_field() -> None:
    api = SimpleNamespace(input_tokens=10, output_tokens=20, cache_creation_input_tokens=30,
                          cache_read_input_tokens=40)

    assert Usage.from_api(api) == Usage(10, 20, 30, 40)


def test_from_api_counts_missing_cache_fields_as_zero() -> None:
    assert Usage.from_api(SimpleNamespace(input_tokens=10, output_tokens=20)) == Usage(10, 20, 0, 0)


def test_from_api_counts_null_cache_fields_as_zero() -> None:
    api = SimpleNamespace(input_tokens=10, output_tokens=20, cache_creation_input_tokens=None,
                          cache_read_input_tokens=None)

    assert Usage.from_api(api) == Usage(10, 20, 0, 0)


def test_from_api_reads_the_sdks_usage_type() -> None:
    from anthropic.types import Usage as ApiUsage

    api = ApiUsage(input_tokens=5, output_tokens=6, cache_creation_input_tokens=7, cache_read_input_tokens=8)

    assert Usage.from_api(api) == Usage(5, 6, 7, 8)


# -- parse_prices ----------------------------------------------------------------------------------


def test_parse_prices_reads_several_models() -> None:
    prices = parse_prices(" claude-a=1,2,3,4 ; claude-b = 0.5,2.5,0.625,0.05;")

    assert prices == {"claude-a": Price(1, 2, 3, 4), "claude-b": Price(0.5, 2.5, 0.625, 0.05)}


def test_parse_prices_of_nothing_is_empty() -> None:
    assert parse_prices("") == {}
    assert parse_prices(" ; ") == {}


@pytest.mark.parametrize("text", ["claude-a=1,2,3", "claude-a=1,2,3,4,5", "=1,2,3,4", "claude-a",
                                  "claude-a=1,2,three,4", "claude-a=1,-2,3,4", "claude-a=1,2,3,4;claude-b=1"])
def test_parse_prices_rejects_malformed_entries(text: str) -> None:
    with pytest.raises(ConfigError, match="ASM_PRICES"):
        parse_prices(text)


@pytest.mark.parametrize("text", ["claude-a=nan,15,3.75,0.3", "claude-a=3,inf,3.75,0.3"])
def test_parse_prices_rejects_non_finite_numbers(text: str) -> None:
    with pytest.raises(ConfigError, match="ASM_PRICES"):
        parse_prices(text)


def test_a_nan_price_would_make_costs_uncomparable() -> None:
    """Why non-finite prices matter: a NaN cost compares False against any cap."""
    cost = Usage(input_tokens=1_000_000).cost(Price(math.nan, 0, 0, 0))

    assert not cost > 5.0
