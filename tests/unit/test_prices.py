"""Prices and charges: exact integer micro-units, rounding, bounds, catalog lookup and coverage."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnirelay.accounting.prices import (
    DEFAULT_PRICES,
    FREE,
    Price,
    PriceCatalog,
    UnpricedModel,
    charge,
    charge_exact,
    estimate,
    micro_units,
)
from omnirelay.canonical.usage import Usage
from omnirelay.errors import PermissionDenied
from omnirelay.providers.presets import PRESETS

MINI = Price(input=150_000, output=600_000, cached_input=75_000)  # $0.15 / $0.60, cache read $0.075
SONNET = Price(input=3_000_000, output=15_000_000, cached_input=300_000, cache_write=3_750_000)
QWEN_PLUS = Price(input=400_000, output=1_200_000, reasoning=4_000_000)
LOCAL = ("ollama", "vllm", "llamacpp", "mock")


# --- exactness ------------------------------------------------------------------------------------


def test_cached_input_on_openai_style_price() -> None:
    usage = Usage(input_tokens=1000, cached_input_tokens=200, output_tokens=500)
    # 800 x 150_000 + 200 x 75_000 + 500 x 600_000 = 435_000_000 per 1M tokens
    assert charge(MINI, usage) == 435


def test_cache_read_and_write_on_anthropic_style_price() -> None:
    usage = Usage(
        input_tokens=10_000, cached_input_tokens=6_000, cache_write_tokens=2_000, output_tokens=1_000
    )
    # 2_000 x 3_000_000 + 6_000 x 300_000 + 2_000 x 3_750_000 + 1_000 x 15_000_000 = 30_300_000_000
    assert charge(SONNET, usage) == 30_300
    assert charge(DEFAULT_PRICES["claude-sonnet-4-5"], usage) == 30_300


def test_reasoning_tokens_at_the_reasoning_rate() -> None:
    usage = Usage(input_tokens=123, output_tokens=1000, reasoning_tokens=700)
    # 123 x 400_000 + 300 x 1_200_000 + 700 x 4_000_000 = 3_209_200_000 -> 3209.2 -> 3209
    assert charge(QWEN_PLUS, usage) == 3209
    assert charge_exact(QWEN_PLUS, usage) == Fraction(32092, 10)


def test_unset_rates_fall_back_to_input_and_output() -> None:
    price = Price(input=2_000_000, output=8_000_000)
    usage = Usage(
        input_tokens=1000,
        cached_input_tokens=300,
        cache_write_tokens=100,
        output_tokens=50,
        reasoning_tokens=20,
    )
    assert charge(price, usage) == charge(price, Usage(input_tokens=1000, output_tokens=50)) == 2400


def test_unit_fees_and_multiplier() -> None:
    assert charge(DEFAULT_PRICES["dall-e-3"], Usage(), images=3) == 120_000
    assert charge(DEFAULT_PRICES["whisper-1"], Usage(), audio_seconds=12.5) == 1250
    assert charge_exact(DEFAULT_PRICES["whisper-1"], Usage(), audio_seconds=0.1) == 10  # decimal, not binary
    assert charge(DEFAULT_PRICES["tts-1"], Usage(), characters=1000) == 15_000
    assert charge(Price(0, 0, per_request=7), Usage()) == 7
    usage = Usage(input_tokens=1000, cached_input_tokens=200, output_tokens=500)
    assert charge(MINI, usage, multiplier=Fraction(3, 2) * Fraction(1, 2)) == 326  # 326.25
    assert charge(MINI, usage, multiplier=2) == 870
    assert charge(MINI, usage, multiplier=0) == 0


def test_huge_counts_stay_exact() -> None:
    assert charge(MINI, Usage(input_tokens=10**12)) == 150_000_000_000
    assert charge(Price(input=1, output=0), Usage(input_tokens=10**12 + 1)) == 1_000_000
    big = 10**17 + 1  # float(big) == 10**17
    assert charge(Price(input=1_000_000, output=0), Usage(input_tokens=big)) == big
    assert charge(Price(input=0, output=3_000_000), Usage(output_tokens=big)) == 3 * big
    assert charge(Price(0, 0, per_request=big), Usage(), multiplier=Fraction(1, 1)) == big


@settings(max_examples=200)
@given(
    counts=st.lists(st.integers(0, 10**15), min_size=5, max_size=5),
    rates=st.lists(st.integers(0, 10**9), min_size=5, max_size=5),
)
def test_charge_matches_integer_oracle(counts: list[int], rates: list[int]) -> None:
    uncached, cached, written, plain, reasoning = counts
    price = Price(rates[0], rates[1], cached_input=rates[2], cache_write=rates[3], reasoning=rates[4])
    usage = Usage(uncached + cached + written, plain + reasoning, cached, written, reasoning)
    total = (
        uncached * rates[0] + cached * rates[2] + written * rates[3] + plain * rates[1] + reasoning * rates[4]
    )
    assert charge(price, usage) == (2 * total + 10**6) // (2 * 10**6)


# --- rounding -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [(499_999, 0), (500_000, 1), (1_499_999, 1), (1_500_000, 2), (2_500_000, 3), (3_500_001, 4)],
)
def test_rounding_is_half_up(tokens: int, expected: int) -> None:
    assert charge(Price(input=1, output=0), Usage(input_tokens=tokens)) == expected


def test_rounding_happens_once_at_the_end() -> None:
    # Each class alone is 0.4 micro-units (rounds to 0); together 0.8 rounds to 1.
    price = Price(input=1, output=1)
    assert charge(price, Usage(input_tokens=400_000)) == 0
    assert charge(price, Usage(input_tokens=400_000, output_tokens=400_000)) == 1
    assert charge(Price(0, 0, per_request=1), Usage(), multiplier=Fraction(1, 2)) == 1
    assert charge(Price(0, 0, per_request=1), Usage(), multiplier=Fraction(1, 3)) == 0


# --- properties -----------------------------------------------------------------------------------

rates = st.integers(0, 10**8)
optional_rates = st.none() | rates
prices = st.builds(
    Price,
    input=rates,
    output=rates,
    cached_input=optional_rates,
    cache_write=optional_rates,
    reasoning=optional_rates,
    per_image=st.integers(0, 10**6),
    per_audio_second=st.integers(0, 10**4),
    per_character=st.integers(0, 100),
    per_request=st.integers(0, 10**4),
)
counts = st.integers(0, 10**9)
multipliers = st.fractions(min_value=0, max_value=100, max_denominator=1000)


def usage_of(uncached: int, cached: int, written: int, plain: int, reasoning: int) -> Usage:
    return Usage(uncached + cached + written, plain + reasoning, cached, written, reasoning)


@given(
    price=prices,
    classes=st.lists(counts, min_size=5, max_size=5),
    which=st.integers(0, 4),
    delta=counts,
    multiplier=multipliers,
)
def test_charge_is_monotonic_in_every_token_count(
    price: Price, classes: list[int], which: int, delta: int, multiplier: Fraction
) -> None:
    more = list(classes)
    more[which] += delta
    assert charge(price, usage_of(*classes), multiplier=multiplier) <= charge(
        price, usage_of(*more), multiplier=multiplier
    )


@given(price=prices, classes=st.lists(counts, min_size=5, max_size=5), a=multipliers, b=multipliers)
def test_charge_is_linear_in_the_multiplier_up_to_rounding(
    price: Price, classes: list[int], a: Fraction, b: Fraction
) -> None:
    usage = usage_of(*classes)
    exact = charge_exact(price, usage)
    assert abs(charge(price, usage, multiplier=a) - a * exact) <= Fraction(1, 2)
    together = charge(price, usage, multiplier=a + b)
    assert abs(together - charge(price, usage, multiplier=a) - charge(price, usage, multiplier=b)) <= 1


@given(data=st.data(), price=prices, bound_in=counts, bound_out=counts, multiplier=multipliers)
def test_estimate_bounds_any_charge_within_its_bounds(
    data: st.DataObject, price: Price, bound_in: int, bound_out: int, multiplier: Fraction
) -> None:
    inp = data.draw(st.integers(0, bound_in))
    cached = data.draw(st.integers(0, inp))
    written = data.draw(st.integers(0, inp - cached))
    out = data.draw(st.integers(0, bound_out))
    reasoning = data.draw(st.integers(0, out))
    usage = Usage(inp, out, cached, written, reasoning)
    bound = estimate(price, bound_in, bound_out, multiplier=multiplier)
    assert bound >= charge(price, usage, multiplier=multiplier)


def test_estimate_values() -> None:
    # 1000 x 3_750_000 (cache write is the dearest input rate) + 500 x 15_000_000 = 11_250_000_000
    assert estimate(SONNET, 1000, 500) == 11_250
    # 1 x 400_000 + 1 x 4_000_000 = 4.4 micro-units, rounded up
    assert estimate(QWEN_PLUS, 1, 1) == 5


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [{"input": -1}, {"output": 1.5}, {"cached_input": -3}, {"per_image": True}, {"per_request": "1"}],
)
def test_price_rejects_non_integer_or_negative_amounts(kwargs: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"input": 1, "output": 1, **kwargs}
    with pytest.raises(ValueError):
        Price(**fields)


def test_floats_are_refused_for_money() -> None:
    with pytest.raises(TypeError):
        charge(MINI, Usage(input_tokens=1), multiplier=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        micro_units(0.15)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        micro_units("0.0000001")
    with pytest.raises(ValueError):
        charge(MINI, Usage(input_tokens=-1))
    with pytest.raises(ValueError):
        charge(MINI, Usage(), multiplier=Fraction(-1, 2))
    assert micro_units("0.15") == 150_000
    assert Price.from_credits("0.15", "0.60", cached_input="0.075") == MINI


# --- catalog --------------------------------------------------------------------------------------

A, B, C, D = (Price(input=i, output=i) for i in (1, 2, 3, 4))


def test_lookup_order() -> None:
    catalog = PriceCatalog(
        defaults={
            "gpt-4o-mini": A,
            "openai/gpt-4o-mini": B,
            "claude-sonnet-4": C,
            "gpt-4o-mini-2024-07-18": D,
        }
    )
    assert catalog.lookup("gpt-4o-mini", "openai") is B  # provider/model first
    assert catalog.lookup("gpt-4o-mini") is A
    assert catalog.lookup("gpt-4o-mini", "azure") is A  # then the model
    assert catalog.lookup("gpt-4o-mini-2024-07-18") is D  # an exact dated entry beats the undated one
    assert catalog.lookup("gpt-4o-mini-2024-08-06", "openai") is B  # date suffix stripped
    assert catalog.lookup("claude-sonnet-4-20250514") is C
    assert catalog.lookup("openai/gpt-4o-mini", "openrouter") is B  # the id as given matches first
    assert catalog.lookup("azure/gpt-4o-mini", "openrouter") is A  # then the vendor prefix stripped
    assert catalog.lookup("anthropic/claude-sonnet-4-20250514", "openrouter") is C
    assert catalog.lookup("GPT-4o-Mini", "OpenAI") is B  # case-insensitive
    assert catalog.lookup("gpt-5") is None


def test_overrides_win_and_set_overrides() -> None:
    catalog = PriceCatalog(defaults={"openai/gpt-4o": A}, overrides={"gpt-4o": B})
    assert catalog.lookup("gpt-4o", "openai") is B
    catalog.set("openai/gpt-4o", C)
    assert catalog.lookup("gpt-4o", "openai") is C
    assert catalog.lookup("gpt-4o") is B
    catalog.set("new-model", D)
    assert catalog.resolve("new-model", None, "refuse") == (D, False)


def test_default_catalog_lookups() -> None:
    catalog = PriceCatalog()
    assert catalog.lookup("gpt-4o-mini-2024-07-18", "openai") == MINI
    assert catalog.lookup("gpt-4o-2024-05-13") == Price(5_000_000, 15_000_000)
    assert catalog.lookup("gpt-4o-2024-08-06") == Price(2_500_000, 10_000_000, cached_input=1_250_000)
    assert catalog.lookup("deepseek-ai/DeepSeek-V3", "together") != catalog.lookup(
        "deepseek-ai/DeepSeek-V3", "siliconflow"
    )
    opus = catalog.lookup("claude-opus-4-1-20250805", "anthropic")
    assert opus == Price(15_000_000, 75_000_000, cached_input=1_500_000, cache_write=18_750_000)


def test_unknown_model_policies() -> None:
    catalog = PriceCatalog(defaults={"known": A})
    assert catalog.resolve("known", "p", "refuse") == (A, False)
    assert catalog.resolve("known", "p", "free") == (A, False)
    assert catalog.resolve("mystery-model", "p", "free") == (FREE, True)
    with pytest.raises(UnpricedModel, match="mystery-model") as err:
        catalog.resolve("mystery-model", "p", "refuse")
    assert isinstance(err.value, PermissionDenied)
    assert err.value.status == 403
    assert err.value.model == "mystery-model"


def test_every_preset_default_model_has_a_price() -> None:
    catalog = PriceCatalog()
    missing = [
        f"{name}/{model}"
        for name, preset in PRESETS.items()
        if name not in LOCAL
        for model in preset.models
        if catalog.lookup(model, name) is None
    ]
    assert not missing, f"preset models without a default price: {missing}"
