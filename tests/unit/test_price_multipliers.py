"""Price multipliers (a user's group times a key's own): exact, one rounding at the end, and the
reservation estimate still bounds the multiplied charge."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omnirelay.accounting.prices import (
    MAX_MULTIPLIER,
    Price,
    charge,
    estimate,
    multiplier_text,
    parse_multiplier,
    price_multiplier,
)
from omnirelay.canonical.usage import Usage

MINI = Price(input=150_000, output=600_000, cached_input=75_000)

# Decimal strings with up to 12 places, as the admin API accepts them.
decimal_texts = st.builds(
    lambda whole, frac, places: f"{whole}.{frac:0{places}d}" if places else str(whole),
    st.integers(0, MAX_MULTIPLIER - 1),
    st.integers(0, 10**12 - 1),
    st.integers(0, 12),
).filter(lambda t: "." not in t or len(t.split(".")[1]) <= 12)
groups = st.tuples(st.integers(0, 10**6), st.integers(1, 10**6))


def test_parse_and_print_are_exact() -> None:
    assert parse_multiplier("1.5") == Fraction(3, 2)
    assert parse_multiplier("0.000000000001") == Fraction(1, 10**12)
    assert parse_multiplier("1.500") == Fraction(3, 2)
    assert multiplier_text(Fraction(3, 2)) == "1.5"
    assert multiplier_text(Fraction(2)) == "2"
    assert multiplier_text(Fraction(0)) == "0"
    assert price_multiplier() == 1
    assert price_multiplier((3, 2), "1.5") == Fraction(9, 4)
    assert price_multiplier(None, "0.8") == Fraction(4, 5)
    assert price_multiplier((1, 3)) == Fraction(1, 3)


@pytest.mark.parametrize(
    "text", ["1e3", "-1", "1,5", "", "abc", "0.0000000000001", "1000.5", "NaN", "inf", "\u0661"]
)
def test_bad_multipliers_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_multiplier(text)


def test_bad_group_multiplier_is_refused() -> None:
    with pytest.raises(ValueError):
        price_multiplier((1, 0))
    with pytest.raises(ValueError):
        price_multiplier((-1, 2))


@given(text=decimal_texts)
def test_text_round_trips(text: str) -> None:
    value = parse_multiplier(text)
    assert parse_multiplier(multiplier_text(value)) == value


def test_one_rounding_not_two() -> None:
    # 1 micro-unit at 1.5 (group) x 1.5 (key) = 2.25 → 2. Rounding after the group (1.5 → 2) and
    # again after the key (2 x 1.5 = 3) would charge 3.
    price = Price(0, 0, per_request=1)
    assert charge(price, Usage(), multiplier=price_multiplier((3, 2), "1.5")) == 2
    # 435 micro-units (see test_prices) x 0.5 x 0.5 = 108.75 → 109
    usage = Usage(input_tokens=1000, cached_input_tokens=200, output_tokens=500)
    assert charge(MINI, usage, multiplier=price_multiplier((1, 2), "0.5")) == 109


@given(
    counts=st.lists(st.integers(0, 10**12), min_size=5, max_size=5),
    rates=st.lists(st.integers(0, 10**8), min_size=5, max_size=5),
    per_request=st.integers(0, 10**6),
    group=groups,
    key=decimal_texts,
)
def test_multiplied_charge_matches_integer_oracle(
    counts: list[int], rates: list[int], per_request: int, group: tuple[int, int], key: str
) -> None:
    uncached, cached, written, plain, reasoning = counts
    price = Price(
        rates[0],
        rates[1],
        cached_input=rates[2],
        cache_write=rates[3],
        reasoning=rates[4],
        per_request=per_request,
    )
    usage = Usage(uncached + cached + written, plain + reasoning, cached, written, reasoning)
    tokens = (
        uncached * rates[0] + cached * rates[2] + written * rates[3] + plain * rates[1] + reasoning * rates[4]
    )
    # Integer-only oracle: (tokens / 1e6 + per_request) x (g_num / g_den) x (k_num / k_den), half up.
    whole, _, frac = key.partition(".")
    k_num, k_den = int(whole + frac), 10 ** len(frac)
    num = (tokens + per_request * 10**6) * group[0] * k_num
    den = 10**6 * group[1] * k_den
    assert charge(price, usage, multiplier=price_multiplier(group, key)) == (2 * num + den) // (2 * den)


@given(
    data=st.data(),
    bound_in=st.integers(0, 10**9),
    bound_out=st.integers(0, 10**9),
    rates=st.lists(st.integers(0, 10**8), min_size=5, max_size=5),
    group=groups,
    key=decimal_texts,
)
def test_estimate_with_multipliers_bounds_the_charge(
    data: st.DataObject,
    bound_in: int,
    bound_out: int,
    rates: list[int],
    group: tuple[int, int],
    key: str,
) -> None:
    price = Price(rates[0], rates[1], cached_input=rates[2], cache_write=rates[3], reasoning=rates[4])
    inp = data.draw(st.integers(0, bound_in))
    cached = data.draw(st.integers(0, inp))
    written = data.draw(st.integers(0, inp - cached))
    out = data.draw(st.integers(0, bound_out))
    reasoning = data.draw(st.integers(0, out))
    factor = price_multiplier(group, key)
    held = estimate(price, bound_in, bound_out, multiplier=factor)
    assert held >= charge(price, Usage(inp, out, cached, written, reasoning), multiplier=factor)
