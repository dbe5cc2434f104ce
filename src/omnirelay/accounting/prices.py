"""Per-model prices and exact charges in integer micro-units.

Money is never a float here. A `Price` holds integers: micro-units of the operator's credit currency
(1 credit = 1,000,000 micro-units) per 1,000,000 tokens for the token rates, and micro-units per unit
for the other fees (per image, per audio second, per character, per request). With 1 credit = 1 USD,
"$0.15 per 1M input tokens" is `input=150_000`.

`charge` prices one request exactly with `Fraction` arithmetic: each token class at its own rate,
the unit fees, times the multiplier (key multiplier times group multiplier), and rounds ONCE at the end,
half up: the exact amount's fractional part of one half or more rounds up to the next micro-unit,
less rounds down (charges are never negative, so "half up" and "half away from zero" agree).
`estimate` is the reservation's upper bound: it rounds up (ceiling) instead, so it is never below the
final charge of a request that stays inside its bounds.

`DEFAULT_PRICES` are vendors' published list prices in USD, taken in October 2025 (see
`PRICES_AS_OF`). Prices change: config entries and `PriceCatalog.set` override them, and an operator
whose credit is not 1 USD must override every price they use.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from omnirelay.canonical.usage import Usage
from omnirelay.errors import PermissionDenied

MICRO = 1_000_000  # micro-units per credit
PER_TOKENS = 1_000_000  # token rates are per this many tokens

Amount = int | str | Decimal | Fraction


def micro_units(credits: Amount) -> int:
    """Credits (an int, a decimal string, `Decimal` or `Fraction`; never a float) as exact micro-units.

    Raises `ValueError` for a negative amount or one finer than a micro-unit.
    """
    if isinstance(credits, bool) or not isinstance(credits, int | str | Decimal | Fraction):
        raise TypeError(f"a price must be an int, decimal string, Decimal or Fraction, not {credits!r}")
    value = Fraction(credits) * MICRO
    if value < 0 or value.denominator != 1:
        raise ValueError(f"price {credits!r} is negative or finer than one micro-unit")
    return value.numerator


@dataclass(frozen=True, slots=True)
class Price:
    """Integer micro-units: token rates per 1,000,000 tokens, the `per_*` fees per unit.

    `cached_input` (cache reads) and `cache_write` default to the `input` rate, `reasoning` to the
    `output` rate.
    """

    input: int
    output: int
    cached_input: int | None = None
    cache_write: int | None = None
    reasoning: int | None = None
    per_image: int = 0
    per_audio_second: int = 0
    per_character: int = 0
    per_request: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in ("cached_input", "cache_write", "reasoning"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Price.{f.name} must be a non-negative int of micro-units, not {value!r}")

    @classmethod
    def from_credits(
        cls,
        input: Amount,
        output: Amount,
        *,
        cached_input: Amount | None = None,
        cache_write: Amount | None = None,
        reasoning: Amount | None = None,
        per_image: Amount = 0,
        per_audio_second: Amount = 0,
        per_character: Amount = 0,
        per_request: Amount = 0,
    ) -> Price:
        """A price from amounts in credits (token rates per 1M tokens), e.g. `from_credits("0.15", "0.6")`."""

        def opt(value: Amount | None) -> int | None:
            return None if value is None else micro_units(value)

        return cls(
            micro_units(input),
            micro_units(output),
            opt(cached_input),
            opt(cache_write),
            opt(reasoning),
            micro_units(per_image),
            micro_units(per_audio_second),
            micro_units(per_character),
            micro_units(per_request),
        )

    @property
    def cached_input_rate(self) -> int:
        return self.input if self.cached_input is None else self.cached_input

    @property
    def cache_write_rate(self) -> int:
        return self.input if self.cache_write is None else self.cache_write

    @property
    def reasoning_rate(self) -> int:
        return self.output if self.reasoning is None else self.reasoning


FREE = Price(0, 0)


def _quantity(name: str, value: object) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, int | float | Fraction):
        raise TypeError(f"{name} must be a number, not {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, not {value!r}")
        value = Fraction(repr(value))  # the decimal the float prints as, not its binary expansion
    result = Fraction(value)
    if result < 0:
        raise ValueError(f"{name} must not be negative, not {value!r}")
    return result


def _multiplier(multiplier: Fraction | int) -> Fraction:
    if isinstance(multiplier, bool) or not isinstance(multiplier, int | Fraction):
        raise TypeError(f"multiplier must be an int or Fraction (never a float), not {multiplier!r}")
    if multiplier < 0:
        raise ValueError(f"multiplier must not be negative, not {multiplier!r}")
    return Fraction(multiplier)


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, not {value!r}")
    return value


def charge_exact(
    price: Price,
    usage: Usage,
    *,
    images: int = 0,
    audio_seconds: float | Fraction = 0,
    characters: int = 0,
    multiplier: Fraction | int = 1,
) -> Fraction:
    """The unrounded charge in micro-units; `charge` is this rounded half up.

    Uncached input is `input - cached - cache_write` and plain output is `output - reasoning`, each
    floored at zero should an upstream report subsets larger than their totals.
    """
    inp = _count("input_tokens", usage.input_tokens)
    out = _count("output_tokens", usage.output_tokens)
    cached = _count("cached_input_tokens", usage.cached_input_tokens)
    written = _count("cache_write_tokens", usage.cache_write_tokens)
    reasoning = _count("reasoning_tokens", usage.reasoning_tokens)
    tokens = (
        max(inp - cached - written, 0) * price.input
        + cached * price.cached_input_rate
        + written * price.cache_write_rate
        + max(out - reasoning, 0) * price.output
        + reasoning * price.reasoning_rate
    )
    fees = (
        _count("images", images) * price.per_image
        + _quantity("audio_seconds", audio_seconds) * price.per_audio_second
        + _count("characters", characters) * price.per_character
        + price.per_request
    )
    return (Fraction(tokens, PER_TOKENS) + fees) * _multiplier(multiplier)


def round_half_up(amount: Fraction) -> int:
    """The nearest integer to a non-negative amount, halves rounded up."""
    return (2 * amount.numerator + amount.denominator) // (2 * amount.denominator)


def charge(
    price: Price,
    usage: Usage,
    *,
    images: int = 0,
    audio_seconds: float | Fraction = 0,
    characters: int = 0,
    multiplier: Fraction | int = 1,
) -> int:
    """The exact charge in micro-units, rounded once, half up."""
    return round_half_up(
        charge_exact(
            price,
            usage,
            images=images,
            audio_seconds=audio_seconds,
            characters=characters,
            multiplier=multiplier,
        )
    )


def estimate(
    price: Price, input_tokens: int, max_output_tokens: int, *, multiplier: Fraction | int = 1
) -> int:
    """An upper bound for a reservation, in micro-units, rounded up.

    Every input token at the highest input-class rate (input, cache read or cache write: a prompt may
    be written to cache whole) and every possible output token at the higher of output and reasoning,
    plus the per-request fee; so `estimate >= charge` for any usage within these bounds.
    """
    in_rate = max(price.input, price.cached_input_rate, price.cache_write_rate)
    out_rate = max(price.output, price.reasoning_rate)
    tokens = (
        _count("input_tokens", input_tokens) * in_rate
        + _count("max_output_tokens", max_output_tokens) * out_rate
    )
    amount = (Fraction(tokens, PER_TOKENS) + price.per_request) * _multiplier(multiplier)
    return math.ceil(amount)


# --- multipliers ----------------------------------------------------------------------------------

MAX_MULTIPLIER = 1000  # a per-key multiplier above this is refused (a typo, not a price)
MAX_MULTIPLIER_DECIMALS = 12


def parse_multiplier(text: str) -> Fraction:
    """A per-key price multiplier given as an exact decimal string ("1.5", "0.25"), as a `Fraction`.

    Raises `ValueError` for anything else: not a plain decimal, negative, over `MAX_MULTIPLIER`, or
    more than `MAX_MULTIPLIER_DECIMALS` decimal places.
    """
    if not isinstance(text, str) or not re.fullmatch(r"[0-9]+(\.[0-9]*)?|\.[0-9]+", text.strip()):
        raise ValueError(f"a multiplier must be a non-negative decimal string such as '1.5', not {text!r}")
    exact = Fraction(Decimal(text.strip()))
    if exact > MAX_MULTIPLIER:
        raise ValueError(f"a multiplier must be at most {MAX_MULTIPLIER}, not {text.strip()!r}")
    if exact * 10**MAX_MULTIPLIER_DECIMALS % 1:
        raise ValueError(f"a multiplier has at most {MAX_MULTIPLIER_DECIMALS} decimal places, not {text!r}")
    return exact


def multiplier_text(value: Fraction) -> str:
    """The canonical decimal string of a multiplier ("1.5", "2", "0.25"); a fraction with no exact
    decimal form (one stored as 1/3) is written "1/3"."""
    den = value.denominator
    for factor in (2, 5):
        while den % factor == 0:
            den //= factor
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    text = format(Decimal(value.numerator) / Decimal(value.denominator), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def price_multiplier(group: tuple[int, int] | None = None, key: str | Fraction | None = None) -> Fraction:
    """The exact factor applied to a request's price: the user's group multiplier (num, den) times the
    key's own multiplier (a decimal string or Fraction); either missing counts as 1."""
    factor = Fraction(1)
    if group is not None:
        num, den = group
        if den <= 0 or num < 0:
            raise ValueError(f"a group multiplier needs num >= 0 and den > 0, not {num}/{den}")
        factor *= Fraction(num, den)
    if key is not None:
        factor *= parse_multiplier(key) if isinstance(key, str) else _multiplier(key)
    return factor


# --- default prices -------------------------------------------------------------------------------

PRICES_AS_OF = "2025-10"


def _p(
    input: str,
    output: str,
    *,
    cached: str | None = None,
    write: str | None = None,
    reasoning: str | None = None,
    image: str = "0",
    audio_second: str = "0",
    character: str = "0",
) -> Price:
    return Price.from_credits(
        input,
        output,
        cached_input=cached,
        cache_write=write,
        reasoning=reasoning,
        per_image=image,
        per_audio_second=audio_second,
        per_character=character,
    )


def _claude(input: str, output: str) -> Price:
    """Anthropic: 5-minute cache writes at 1.25x input, cache reads at 0.1x input."""
    rate = Fraction(input)
    return Price.from_credits(input, output, cached_input=rate / 10, cache_write=rate * Fraction(5, 4))


_OPUS = _claude("15", "75")
_SONNET = _claude("3", "15")

# USD list prices per 1M tokens (unit fees as noted), taken October 2025 from the vendors' pricing
# pages; prices change, so check before relying on them. Standard tier, short-context rates
# (Gemini 2.5 Pro's and Claude Sonnet's long-context rates are higher), no batch discounts.
# Keys are model ids, or `provider/model` where the same id is priced differently per provider.
# Vendors billing in CNY (the mainland endpoints of Moonshot, Zhipu and SiliconFlow) are given at
# their international USD list prices where published, else converted at 7.2 CNY per USD.
DEFAULT_PRICES: dict[str, Price] = {
    # OpenAI
    "gpt-4o": _p("2.50", "10.00", cached="1.25"),
    "gpt-4o-2024-05-13": _p("5.00", "15.00"),
    "gpt-4o-mini": _p("0.15", "0.60", cached="0.075"),
    "gpt-4.1": _p("2.00", "8.00", cached="0.50"),
    "gpt-4.1-mini": _p("0.40", "1.60", cached="0.10"),
    "gpt-4.1-nano": _p("0.10", "0.40", cached="0.025"),
    "gpt-5": _p("1.25", "10.00", cached="0.125"),
    "gpt-5-mini": _p("0.25", "2.00", cached="0.025"),
    "gpt-5-nano": _p("0.05", "0.40", cached="0.005"),
    "o1": _p("15.00", "60.00", cached="7.50"),
    "o3": _p("2.00", "8.00", cached="0.50"),
    "o3-mini": _p("1.10", "4.40", cached="0.55"),
    "o4-mini": _p("1.10", "4.40", cached="0.275"),
    "text-embedding-3-small": _p("0.02", "0"),
    "text-embedding-3-large": _p("0.13", "0"),
    "text-embedding-ada-002": _p("0.10", "0"),
    "omni-moderation-latest": FREE,
    "gpt-image-1": _p("5.00", "40.00", cached="1.25"),  # text input; image input tokens are $10
    "dall-e-3": _p("0", "0", image="0.04"),  # standard 1024x1024
    "tts-1": _p("0", "0", character="0.000015"),  # $15 per 1M characters
    "tts-1-hd": _p("0", "0", character="0.00003"),
    "whisper-1": _p("0", "0", audio_second="0.0001"),  # $0.006 per minute
    # Anthropic
    "claude-opus-4-1": _OPUS,
    "claude-opus-4-0": _OPUS,
    "claude-opus-4": _OPUS,
    "claude-sonnet-4-5": _SONNET,
    "claude-sonnet-4-0": _SONNET,
    "claude-sonnet-4": _SONNET,
    "claude-3-7-sonnet": _SONNET,
    "claude-3-7-sonnet-latest": _SONNET,
    "claude-haiku-4-5": _claude("1", "5"),
    "claude-3-5-haiku": _claude("0.80", "4"),
    "claude-3-5-haiku-latest": _claude("0.80", "4"),
    "claude-3-haiku": _p("0.25", "1.25", cached="0.03", write="0.30"),
    # Google Gemini (paid tier, prompts up to 200k tokens; thinking billed as output)
    "gemini-2.5-pro": _p("1.25", "10.00", cached="0.31"),
    "gemini-2.5-flash": _p("0.30", "2.50", cached="0.075"),
    "gemini-2.5-flash-lite": _p("0.10", "0.40", cached="0.025"),
    "gemini-2.0-flash": _p("0.10", "0.40", cached="0.025"),
    "gemini-embedding-001": _p("0.15", "0"),
    # DeepSeek (V3.2-Exp prices from 2025-09-29; `cached` is the cache-hit rate)
    "deepseek-chat": _p("0.28", "0.42", cached="0.028"),
    "deepseek-reasoner": _p("0.28", "0.42", cached="0.028"),
    # Groq
    "llama-3.3-70b-versatile": _p("0.59", "0.79"),
    "llama-3.1-8b-instant": _p("0.05", "0.08"),
    "whisper-large-v3": _p("0", "0", audio_second="0.000031"),  # $0.111/hour, to the micro-unit
    "groq/openai/gpt-oss-120b": _p("0.15", "0.75"),
    # Mistral
    "mistral-large-latest": _p("2.00", "6.00"),
    "mistral-medium-latest": _p("0.40", "2.00"),
    "mistral-small-latest": _p("0.10", "0.30"),
    "codestral-latest": _p("0.30", "0.90"),
    "mistral-embed": _p("0.10", "0"),
    # xAI
    "grok-4": _p("3.00", "15.00", cached="0.75"),
    "grok-3": _p("3.00", "15.00", cached="0.75"),
    "grok-3-mini": _p("0.30", "0.50", cached="0.075"),
    # Moonshot (platform.moonshot.ai USD prices)
    "moonshot-v1-8k": _p("0.20", "2.00"),
    "moonshot-v1-32k": _p("1.00", "3.00"),
    "moonshot-v1-128k": _p("2.00", "5.00"),
    "kimi-k2-0711-preview": _p("0.60", "2.50", cached="0.15"),
    "kimi-k2-0905-preview": _p("0.60", "2.50", cached="0.15"),
    # Qwen (Alibaba Model Studio international; Qwen3 thinking output at its own rate)
    "qwen-max": _p("1.60", "6.40"),
    "qwen-plus": _p("0.40", "1.20", reasoning="4.00"),
    "qwen-turbo": _p("0.05", "0.20", reasoning="1.00"),
    "text-embedding-v3": _p("0.07", "0"),
    # Zhipu (z.ai USD prices; GLM-4-Plus and Embedding-3 converted from CNY 5 and 0.5 per 1M)
    "glm-4.5": _p("0.60", "2.20", cached="0.11"),
    "glm-4.5-air": _p("0.20", "1.10", cached="0.03"),
    "glm-4.6": _p("0.60", "2.20", cached="0.11"),
    "glm-4-plus": _p("0.69", "0.69"),
    "glm-4-flash": FREE,
    "zhipu/embedding-3": _p("0.07", "0"),
    # SiliconFlow (converted from CNY list prices)
    "siliconflow/deepseek-ai/DeepSeek-V3": _p("0.28", "1.11"),
    "siliconflow/Qwen/Qwen2.5-72B-Instruct": _p("0.57", "0.57"),
    "siliconflow/BAAI/bge-m3": FREE,
    # Together
    "together/meta-llama/Llama-3.3-70B-Instruct-Turbo": _p("0.88", "0.88"),
    "together/deepseek-ai/DeepSeek-V3": _p("1.25", "1.25"),
    "together/Qwen/Qwen2.5-72B-Instruct-Turbo": _p("1.20", "1.20"),
    # Cerebras
    "cerebras/llama3.1-8b": _p("0.10", "0.10"),
    "cerebras/llama-3.3-70b": _p("0.85", "1.20"),
    "cerebras/gpt-oss-120b": _p("0.25", "0.69"),
    # OpenRouter passes vendors' list prices through (`openai/gpt-4o-mini` finds `gpt-4o-mini`);
    # its `:free` variants cost nothing.
    "openrouter/meta-llama/llama-3.3-70b-instruct:free": FREE,
    "openrouter/deepseek/deepseek-chat-v3-0324:free": FREE,
}


# --- catalog --------------------------------------------------------------------------------------

UnknownModelPolicy = Literal["refuse", "free"]

_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8})$")


class UnpricedModel(PermissionDenied):
    """The model has no price and the unknown-model policy is `refuse`."""

    code = "model_not_priced"

    def __init__(self, model: str, provider: str | None = None) -> None:
        where = f" (provider {provider!r})" if provider else ""
        super().__init__(
            f"model {model!r}{where} has no price configured, and unpriced models are refused; "
            "add a price for it or set the unknown-model policy to 'free'",
            param="model",
        )
        self.model = model
        self.provider = provider


def _normalise(prices: Mapping[str, Price]) -> dict[str, Price]:
    return {key.lower(): price for key, price in prices.items()}


def _candidates(model: str) -> list[str]:
    """The model, without a date suffix, without a vendor prefix, without both; in that order."""
    base = model.rsplit("/", 1)[-1]
    names: list[str] = []
    for name in (model, _DATE_SUFFIX.sub("", model), base, _DATE_SUFFIX.sub("", base)):
        if name and name not in names:
            names.append(name)
    return names


class PriceCatalog:
    """Default prices under operator overrides; model ids are matched case-insensitively.

    `lookup` tries, for the model as given, then without a date suffix (`-2024-07-18`, `-20250514`),
    then without a vendor prefix (`openai/gpt-4o-mini`), then without both: first `provider/name`,
    then `name`. Every override is tried before any default, so an operator's price for `gpt-4o`
    wins even over a default for `openai/gpt-4o`.
    """

    def __init__(
        self,
        defaults: Mapping[str, Price] = DEFAULT_PRICES,
        overrides: Mapping[str, Price] | None = None,
    ) -> None:
        self._defaults = _normalise(defaults)
        self._overrides = _normalise(overrides or {})

    def set(self, model: str, price: Price) -> None:
        """Override the price of `model` (or of `provider/model`)."""
        if not isinstance(price, Price):
            raise TypeError(f"price must be a Price, not {price!r}")
        self._overrides[model.lower()] = price

    def lookup(self, model: str, provider: str | None = None) -> Price | None:
        keys: list[str] = []
        for name in _candidates(model.lower()):
            if provider:
                keys.append(f"{provider.lower()}/{name}")
            keys.append(name)
        for table in (self._overrides, self._defaults):
            for key in keys:
                if (price := table.get(key)) is not None:
                    return price
        return None

    def resolve(
        self, model: str, provider: str | None = None, policy: UnknownModelPolicy = "refuse"
    ) -> tuple[Price, bool]:
        """The model's price and whether it was unpriced (then charged as free under policy "free")."""
        price = self.lookup(model, provider)
        if price is not None:
            return price, False
        if policy == "free":
            return FREE, True
        raise UnpricedModel(model, provider)
