"""Upstream response headers the gateway reads."""

from __future__ import annotations

# Headers of a rate-limited answer that tell a client when to come back (relayed to clients).
RETRY_HEADERS: tuple[str, ...] = ("retry-after", "retry-after-ms")

# Headers the adapters keep on error answers (lower-case) so the router sees the vendor's limits;
# `routing.failures.classify` works with any subset of them. Only RETRY_HEADERS reach clients.
RATE_LIMIT_HEADERS: tuple[str, ...] = (
    "retry-after",
    "retry-after-ms",
    # OpenAI, Groq, Together, DeepSeek and most OpenAI-compatible vendors
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
    # vendors that name the window (Cerebras style)
    "x-ratelimit-limit-requests-minute",
    "x-ratelimit-remaining-requests-minute",
    "x-ratelimit-reset-requests-minute",
    "x-ratelimit-limit-tokens-minute",
    "x-ratelimit-remaining-tokens-minute",
    "x-ratelimit-reset-tokens-minute",
    "x-ratelimit-limit-requests-hour",
    "x-ratelimit-remaining-requests-hour",
    "x-ratelimit-reset-requests-hour",
    "x-ratelimit-limit-tokens-hour",
    "x-ratelimit-remaining-tokens-hour",
    "x-ratelimit-reset-tokens-hour",
    "x-ratelimit-limit-requests-day",
    "x-ratelimit-remaining-requests-day",
    "x-ratelimit-reset-requests-day",
    "x-ratelimit-limit-tokens-day",
    "x-ratelimit-remaining-tokens-day",
    "x-ratelimit-reset-tokens-day",
    # OpenRouter and generic APIs (reset: epoch ms, epoch s or seconds)
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    # Anthropic (reset: RFC 3339)
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-limit",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-limit",
    "anthropic-ratelimit-input-tokens-remaining",
    "anthropic-ratelimit-input-tokens-reset",
    "anthropic-ratelimit-output-tokens-limit",
    "anthropic-ratelimit-output-tokens-remaining",
    "anthropic-ratelimit-output-tokens-reset",
)
