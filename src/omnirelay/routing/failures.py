"""What an upstream failure means to the router: which kind, how long to stay away, and from what.

`classify(err, now)` turns an `UpstreamError` (as the upstream adapters' error mappers build it) into a
`Verdict`. `learned_limits_from_headers`, `remaining_from_headers` and `reset_seconds` read the vendors'
rate-limit headers on their own, because the router reads them on successful answers too.

Decision table (first matching row wins; "status" is the vendor's HTTP status, `upstream_status`):

    signal                                              kind             scope     retryable
    UpstreamTimeout (connect/first byte/idle)           timeout          provider  yes
    no status, code bad_upstream_response / malformed   bad_response     provider  yes
    no status, UpstreamUnavailable / stream incomplete  connection       provider  yes
    401, Gemini API_KEY_INVALID, "invalid api key"      auth             key       yes
    429 saying overloaded / capacity                    server           provider  yes
    429 "Request too large for … per min" (TPM)         context_window   key       yes
    429 with a quota signal (below)                     quota_exhausted  key*      yes
    429 otherwise                                       rate_limit       key*      yes
    4xx saying country/region/location unsupported      auth             provider  yes
    4xx content-policy code or message                  content_policy   key       yes
    4xx context-length code or message                  context_window   key       yes
    402, or 4xx with a strong quota/billing message     quota_exhausted  key*      yes
    403                                                 auth             key       yes
    408, 409                                            server           key       yes
    404 (the deployment's model is unknown there)       bad_request      key       yes
    other 4xx                                           bad_request      key       no
    5xx, 529                                            server           provider  yes
    anything else (1xx-3xx error payloads)              bad_response     provider  yes

    * provider when the vendor's message names the organisation or project the limit belongs to
      (OpenAI, Groq: "… in organization org-… on requests per min"; Anthropic: "… for your
      organization"): every key of that organisation shares it. Keys from different organisations
      should be configured as different providers.

Quota signals on a 429: codes/types `insufficient_quota`, `billing_error`, …; messages naming a day or
month window ("per day", "per-day", "RPD", "TPD", "daily", "monthly"), balance/credit/usage limits; an
exhausted day window in the headers; a wait over an hour. Weak signals ("quota", "billing", "credit")
count only when the vendor gave no wait of two minutes or less: Gemini says "You exceeded your current
quota, please check your plan and billing details" on every per-minute 429, with a RetryInfo of seconds.

Decisions worth knowing:
- `retryable` answers "may another deployment succeed?", not "is it safe to retry now": whether bytes
  already reached the client is the attempt loop's business. Request-specific kinds (`context_window`,
  `content_policy`) are retryable because a deployment with a larger window or another vendor's policy
  may serve the request; the router falls back on them only when the route's `fallback_on` says so.
- A 403 for an unsupported country/region is about where the gateway runs, not the key: it is `auth`
  (the deployment is unusable) with scope `provider`, retryable elsewhere. It is not `bad_request`,
  because the client did nothing wrong.
- A 404 from a deployment the router chose means that deployment's upstream model is missing; another
  deployment may serve the model, so it is a retryable `bad_request` (no cooldown).
- 5xx/529, timeouts, connection failures and malformed answers are failures of the whole endpoint:
  scope `provider`. 408/409 are transient blips of one request: scope `key`.
- `retry_after` comes from `retry-after-ms`, `retry-after` (seconds or HTTP date; Gemini's RetryInfo is
  turned into it by the adapter), then the latest reset among exhausted windows, then the vendor's
  "try again in 1m26.4s" in the message, then the latest reset among windows of unknown remaining.

`now` is wall-clock Unix time (`time.time()`): reset headers are absolute timestamps (Anthropic RFC 3339,
OpenRouter epoch milliseconds, HTTP dates).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

from omnirelay.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from omnirelay.wire.headers import RATE_LIMIT_HEADERS as RATE_LIMIT_HEADERS

Kind = Literal[
    "rate_limit",
    "quota_exhausted",
    "auth",
    "context_window",
    "content_policy",
    "server",
    "timeout",
    "connection",
    "bad_request",
    "bad_response",
]
Scope = Literal["key", "provider"]


MINUTE = 60.0
HOUR = 3600.0
SHORT_WAIT = 120.0  # a vendor-given wait up to this long means a per-minute limit, whatever the words


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    retry_after: float | None = None  # seconds
    scope: Scope = "key"
    learned: dict[str, int] = field(default_factory=dict, hash=False)  # rpm, rpd, tpm, tpd, itpm, otpm, …
    retryable: bool = True  # may another deployment succeed?
    reason: str = ""  # for operators; never carries secrets or the vendor's message


# --- durations and timestamps ---------------------------------------------------------------------

_NUMBER = re.compile(r"\+?(?:\d+(?:\.\d*)?|\.\d+)")
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO = re.compile(r"\+?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """Seconds in a Go-style duration (`1h2m3.5s`, `250ms`, `6m0s`, `0s`) or a plain number of seconds.

    None for anything else, including negative durations."""
    s = text.strip()
    if _NUMBER.fullmatch(s):
        return float(s)
    if not _GO.fullmatch(s):
        return None
    return sum(float(value) * _UNIT[unit] for value, unit in _GO_PART.findall(s))


def _timestamp(text: str) -> float | None:
    """Unix time of an RFC 3339 / ISO 8601 time or an HTTP date; None when it is neither."""
    s = re.sub(r"(\.\d{6})\d+", r"\1", text.strip())
    try:
        when = datetime.fromisoformat(s)
    except ValueError:
        try:
            when = parsedate_to_datetime(s)
        except (TypeError, ValueError, IndexError):
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _until(moment: float, now: float | None) -> float | None:
    return None if now is None else max(0.0, moment - now)


def _reset_value(text: str, now: float | None) -> float | None:
    """Seconds until a reset header's moment: a duration, seconds, epoch s/ms, or a timestamp."""
    s = text.strip()
    if _NUMBER.fullmatch(s):
        value = float(s)
        if value >= 1e11:  # epoch milliseconds (OpenRouter)
            return _until(value / 1000, now)
        if value >= 1e8:  # epoch seconds
            return _until(value, now)
        return value
    seconds = parse_duration(s)
    if seconds is not None:
        return seconds
    moment = _timestamp(s)
    return None if moment is None else _until(moment, now)


def _retry_after(h: Mapping[str, str], now: float) -> float | None:
    ms = h.get("retry-after-ms", "").strip()
    if _NUMBER.fullmatch(ms):
        return float(ms) / 1000
    value = h.get("retry-after", "").strip()
    if not value:
        return None
    seconds = parse_duration(value)
    if seconds is not None:
        return seconds
    moment = _timestamp(value)
    return None if moment is None else _until(moment, now)


# --- rate-limit windows ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Window:
    key: str | None  # the learned name (rpm, rpd, tpm, …); None when the window cannot be told
    limit: int | None
    remaining: int | None
    reset: float | None  # seconds from now


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _count(value: str | None) -> int | None:
    if value is None or not _NUMBER.fullmatch(value.strip()):
        return None
    number = float(value.strip())
    return int(number) if math.isfinite(number) else None


def _requests_key(
    limit: int | None, remaining: int | None, reset: float | None, has_reset: bool
) -> str | None:
    """rpm or rpd for a request limit whose window is not named.

    A reset more than a minute away cannot belong to a per-minute window. Vendors that refill
    continuously (Groq's `x-ratelimit-limit-requests` is its RPD) report the time to refill what was used,
    so the window is estimated as reset * limit / used; over an hour, it is a day window."""
    if reset is None:
        return None if has_reset else "rpm"
    if reset > MINUTE + 1:
        return "rpd"
    if (
        limit
        and remaining is not None
        and 0 <= remaining < limit
        and reset * limit / (limit - remaining) > HOUR
    ):
        return "rpd"
    return "rpm"


def _windows(h: Mapping[str, str], now: float | None) -> list[_Window]:
    """Every rate-limit window the (lower-cased) headers describe, the most specific first."""
    out: list[_Window] = []

    def read(prefix: str, names: tuple[str, str, str]) -> tuple[int | None, int | None, float | None, bool]:
        limit, remaining, reset = (h.get(prefix + n) for n in names)
        seconds = _reset_value(reset, now) if reset is not None else None
        return _count(limit), _count(remaining), seconds, reset is not None

    for dim, letter in (("requests", "r"), ("tokens", "t")):
        for unit in ("minute", "hour", "day"):
            limit, remaining, reset, _ = read(
                "x-ratelimit-", (f"limit-{dim}-{unit}", f"remaining-{dim}-{unit}", f"reset-{dim}-{unit}")
            )
            if limit is not None or remaining is not None or reset is not None:
                out.append(_Window(f"{letter}p{unit[0]}", limit, remaining, reset))
    for dim in ("requests", "tokens"):
        limit, remaining, reset, has_reset = read(
            "x-ratelimit-", (f"limit-{dim}", f"remaining-{dim}", f"reset-{dim}")
        )
        if limit is not None or remaining is not None or reset is not None:
            key = "tpm" if dim == "tokens" else _requests_key(limit, remaining, reset, has_reset)
            out.append(_Window(key, limit, remaining, reset))
    for dim, key in (
        ("requests", "rpm"),
        ("tokens", "tpm"),
        ("input-tokens", "itpm"),
        ("output-tokens", "otpm"),
    ):
        limit, remaining, reset, _ = read(f"anthropic-ratelimit-{dim}-", ("limit", "remaining", "reset"))
        if limit is not None or remaining is not None or reset is not None:
            out.append(_Window(key, limit, remaining, reset))
    limit, remaining, reset, has_reset = read("x-ratelimit-", ("limit", "remaining", "reset"))
    if limit is not None or remaining is not None or reset is not None:
        out.append(_Window(_requests_key(limit, remaining, reset, has_reset), limit, remaining, reset))
    return out


def learned_limits_from_headers(headers: Mapping[str, str], now: float | None = None) -> dict[str, int]:
    """Ceilings the vendor announces: `{"rpm": 500, "tpm": 30000, "rpd": 14400, …}`.

    Keys: rpm/rpd/rph (requests per minute/day/hour), tpm/tpd/tph (tokens), itpm/otpm (Anthropic input
    and output tokens per minute). `x-ratelimit-limit-tokens` is always tpm; `x-ratelimit-limit-requests`
    and a bare `x-ratelimit-limit` are rpm or rpd by their reset (see `_requests_key`). Without `now`, a
    limit whose window can only be told from an absolute reset time is left out."""
    learned: dict[str, int] = {}
    for window in _windows(_lower(headers), now):
        if window.key and window.limit is not None and window.limit > 0:
            learned.setdefault(window.key, window.limit)
    return learned


def remaining_from_headers(headers: Mapping[str, str], now: float | None = None) -> dict[str, int]:
    """What is left in each window, under the same keys as `learned_limits_from_headers`."""
    left: dict[str, int] = {}
    for window in _windows(_lower(headers), now):
        if window.key and window.remaining is not None:
            left.setdefault(window.key, max(0, window.remaining))
    return left


def reset_seconds(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to stay away, from the headers alone, or None when they do not say.

    `retry-after-ms`, then `retry-after`, then the latest reset among exhausted windows (remaining 0):
    when both the requests and the tokens of a minute are used up, the later reset is the one to wait
    for."""
    h = _lower(headers)
    wait = _retry_after(h, now)
    if wait is not None:
        return wait
    resets = [w.reset for w in _windows(h, now) if w.remaining is not None and w.remaining <= 0]
    known = [r for r in resets if r is not None]
    return max(known) if known else None


# --- signals in codes and messages ----------------------------------------------------------------

_I = re.IGNORECASE
_AUTH = re.compile(r"invalid[_ ]api[_ ]key|api[_ ]key[_ ]invalid|api key not valid|incorrect api key", _I)
_REGION = re.compile(
    r"unsupported_country|country, region,? or territory|location is not supported"
    r"|not (?:supported|available) in your (?:country|region|location|territory)"
    r"|(?:country|region|territory) (?:is )?not supported|unsupported (?:country|region|location)",
    _I,
)
_CONTENT = re.compile(
    r"content[_ ](?:management[_ ])?polic|content[_ ]filter|safety system|responsible ?ai"
    r"|moderation_blocked|flagged (?:by|for|as)|usage polic|invalid_prompt",
    _I,
)
_CONTENT_CASED = re.compile(r"\b(?:SAFETY|PROHIBITED_CONTENT)\b")
_CONTEXT = re.compile(
    r"context_length_exceeded|context[_ ]window|context length|context limit|prompt is too long"
    r"|too many (?:input )?tokens|input is too long|input token count.{0,40}exceeds"
    r"|request too large for|inputs`? tokens \+ `?max_new_tokens",
    _I,
)
_TOO_LARGE = re.compile(r"request too large for", _I)
_OVERLOADED = re.compile(r"overloaded|capacity|temporarily unavailable", _I)
_QUOTA_CODES = frozenset(
    {
        "insufficient_quota",
        "billing_error",
        "billing_hard_limit_reached",
        "billing_not_active",
        "insufficient_balance",
        "payment_required",
    }
)
_QUOTA_STRONG = re.compile(
    r"\bper[ _-]?day|perday|\b[rt]pd\b|\bdaily\b|\bper[ _-]?month|\bmonthly\b"
    r"|insufficient[ _](?:balance|credits?|funds|quota)|credit balance|(?:more|out of|no) credits"
    r"|billing hard limit|payment required|usage limits?\b|spend(?:ing)? limit",
    _I,
)
_QUOTA_WEAK = re.compile(r"\bquota\b|billing|\bcredits?\b", _I)
_ORG_WIDE = re.compile(r"\b(?:organi[sz]ation|project)\b", _I)
_HINT_GO = re.compile(r"(?:try again|retry) (?:in|after) ((?:\d+(?:\.\d+)?(?:ms|h|m|s))+)\b", _I)
_HINT_WORDS = re.compile(
    r"(?:try again|retry) (?:in|after) (\d+(?:\.\d+)?) ?"
    r"(milliseconds?|seconds?|secs?|minutes?|mins?|hours?)\b",
    _I,
)
_WORD_UNIT = {"mil": 1e-3, "sec": 1.0, "min": 60.0, "hou": 3600.0}


def _hint(text: str) -> float | None:
    """The wait a vendor writes into its message: "try again in 1m26.4s", "retry after 6 seconds"."""
    match = _HINT_GO.search(text)
    if match:
        return parse_duration(match.group(1))
    match = _HINT_WORDS.search(text)
    if match:
        return float(match.group(1)) * _WORD_UNIT[match.group(2).lower()[:3]]
    return None


# --- classification -------------------------------------------------------------------------------


def classify(err: UpstreamError, now: float) -> Verdict:
    """The router's reading of one upstream failure (see the module's decision table)."""
    headers = _lower(err.headers)
    learned = learned_limits_from_headers(headers, now)
    wait = reset_seconds(headers, now)
    message = err.message
    if err.provider:  # the mappers quote the provider's name; it must not read as a signal
        message = message.replace(repr(err.provider), "''")
    codes = {c.lower() for c in (err.code, err.type) if c}
    text = " ".join([*sorted(codes), message])
    who = f"Provider {err.provider!r}" if err.provider else "The upstream"

    def verdict(
        kind: Kind, what: str, scope: Scope = "key", retryable: bool = True, after: float | None = None
    ) -> Verdict:
        reason = f"{who} {what}"
        if after is not None:
            reason += f"; retry in {after:.3g}s" if after < 100 else f"; retry in {after:.0f}s"
        return Verdict(kind, after, scope, learned, retryable, reason + ".")

    if isinstance(err, UpstreamTimeout):
        return verdict("timeout", "timed out", "provider")
    if err.upstream_status is None:
        if err.code == "bad_upstream_response" or "malformed" in message.lower():
            return verdict("bad_response", "sent a malformed answer", "provider")
        if isinstance(err, UpstreamUnavailable) or err.code == "upstream_stream_incomplete":
            return verdict("connection", "could not be reached or broke the connection", "provider")
    status = err.upstream_status if err.upstream_status is not None else err.status
    http = f"(HTTP {status})"
    scope: Scope = "provider" if _ORG_WIDE.search(message) else "key"  # of rate limits and quotas

    if status == 401 or err.status == 401 or "invalid_api_key" in codes or _AUTH.search(text):
        return verdict("auth", f"rejected the key {http}")
    if status == 429:
        windows = _windows(headers, now)
        if wait is None:
            wait = _hint(message)
        if wait is None:
            unknown = [w.reset for w in windows if w.remaining is None and w.reset is not None]
            wait = max(unknown) if unknown else None
        if _OVERLOADED.search(text):
            return verdict("server", f"is over capacity {http}", "provider", after=wait)
        if _TOO_LARGE.search(text):
            return verdict("context_window", f"says the request exceeds a per-minute limit {http}")
        day_exhausted = any(w.key in ("rpd", "tpd") and w.remaining == 0 for w in windows)
        if (
            codes & _QUOTA_CODES
            or _QUOTA_STRONG.search(text)
            or day_exhausted
            or (wait is not None and wait > HOUR)
            or (_QUOTA_WEAK.search(text) and (wait is None or wait > SHORT_WAIT))
        ):
            return verdict(
                "quota_exhausted", f"says a daily or billing quota is used up {http}", scope, after=wait
            )
        return verdict("rate_limit", f"is rate limited {http}", scope, after=wait)
    if 400 <= status < 500:
        if _REGION.search(text):
            return verdict("auth", f"does not serve the gateway's country or region {http}", "provider")
        if _CONTENT.search(text) or _CONTENT_CASED.search(message):
            return verdict("content_policy", f"refused the request under its content policy {http}")
        if _CONTEXT.search(text):
            return verdict("context_window", f"says the prompt does not fit the model {http}")
        if status == 402 or codes & _QUOTA_CODES or _QUOTA_STRONG.search(text):
            return verdict(
                "quota_exhausted", f"says the quota or balance is used up {http}", scope, after=wait
            )
        if status == 403 or err.status == 403:
            return verdict("auth", f"denied the key access {http}")
        if status in (408, 409):
            return verdict("server", f"asked for the request to be repeated {http}", after=wait)
        if status == 404:
            return verdict("bad_request", f"does not know the deployment's model or path {http}")
        return verdict("bad_request", f"rejected the request as invalid {http}", retryable=False)
    if status >= 500:
        return verdict("server", f"failed {http}", "provider", after=wait)
    return verdict("bad_response", f"sent an unusable answer {http}", "provider")
