"""`routing.failures`: vendor error answers → the router's verdicts, through the real error mappers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict

from omnirelay.errors import UpstreamError
from omnirelay.routing.failures import (
    RATE_LIMIT_HEADERS,
    Verdict,
    classify,
    learned_limits_from_headers,
    parse_duration,
    remaining_from_headers,
    reset_seconds,
)
from omnirelay.transport.http import TransportError
from omnirelay.upstream import openai
from omnirelay.upstream.anthropic import errors as anthropic
from omnirelay.upstream.base import Target
from omnirelay.upstream.gemini import errors as gemini

NOW = 1_750_000_000.0
TARGET = Target(name="p", base_url="http://x", client=None)
Mapper = Callable[[Target, int, Mapping[str, str], bytes], UpstreamError]


def rfc3339(seconds_from_now: float) -> str:
    return datetime.fromtimestamp(NOW + seconds_from_now, UTC).isoformat().replace("+00:00", "Z")


def epoch_ms(seconds_from_now: float) -> str:
    return str(int((NOW + seconds_from_now) * 1000))


def upstream(
    mapper: Mapper, status: int, headers: dict[str, str], body: Any, keep_all: bool
) -> UpstreamError:
    """Run the real mapper on a raw answer (headers case-insensitive, as aiohttp gives them).

    `keep_all` makes sure every `RATE_LIMIT_HEADERS` entry is kept; without it the error carries only the
    retry hints, as from a vendor (or proxy) that sends nothing else."""
    raw = CIMultiDict(headers)
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    err = mapper(TARGET, status, raw, data)
    if keep_all:
        err.headers.update({h: raw[h] for h in RATE_LIMIT_HEADERS if h in raw})
    else:
        err.headers = {h: v for h, v in err.headers.items() if h in ("retry-after", "retry-after-ms")}
    return err


@dataclass
class Case:
    id: str
    mapper: Mapper
    status: int
    body: Any
    kind: str
    scope: str = "key"
    retryable: bool = True
    retry_after: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    learned: dict[str, int] = field(default_factory=dict)
    keep_all: bool = True


def oai(message: str, type: str | None = None, code: str | None = None, param: str | None = None) -> Any:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def ant(type: str, message: str) -> Any:
    return {"type": "error", "error": {"type": type, "message": message}, "request_id": "req_011CX"}


def goog(code: int, status: str, message: str, *details: Any) -> Any:
    return {"error": {"code": code, "message": message, "status": status, "details": list(details)}}


OPENAI_RPM = (
    "Rate limit reached for gpt-4o in organization org-AbC123 on requests per min (RPM): Limit 500, "
    "Used 500, Requested 1. Please try again in 120ms. Visit https://platform.openai.com/account/rate-limits"
)
OPENAI_HEADERS = {
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "120ms",
    "x-ratelimit-limit-tokens": "30000",
    "x-ratelimit-remaining-tokens": "29000",
    "x-ratelimit-reset-tokens": "2s",
}
ANTHROPIC_429 = (
    "This request would exceed the rate limit for your organization (4a6b2c) of 30,000 input tokens per "
    "minute. For details, refer to: https://docs.anthropic.com/en/api/rate-limits. You can see the response "
    "headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try "
    "again later."
)
ANTHROPIC_HEADERS = {
    "retry-after": "20",
    "anthropic-ratelimit-requests-limit": "50",
    "anthropic-ratelimit-requests-remaining": "49",
    "anthropic-ratelimit-requests-reset": rfc3339(1.2),
    "anthropic-ratelimit-tokens-limit": "38000",
    "anthropic-ratelimit-tokens-remaining": "0",
    "anthropic-ratelimit-tokens-reset": rfc3339(45),
    "anthropic-ratelimit-input-tokens-limit": "30000",
    "anthropic-ratelimit-input-tokens-remaining": "0",
    "anthropic-ratelimit-input-tokens-reset": rfc3339(20),
    "anthropic-ratelimit-output-tokens-limit": "8000",
    "anthropic-ratelimit-output-tokens-remaining": "8000",
    "anthropic-ratelimit-output-tokens-reset": rfc3339(0),
}
ANTHROPIC_LEARNED = {"rpm": 50, "tpm": 38000, "itpm": 30000, "otpm": 8000}
GEMINI_PER_MINUTE = (
    "You exceeded your current quota, please check your plan and billing details. For more information on "
    "this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n* Quota exceeded for metric: "
    "generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 10, model: "
    "gemini-2.0-flash\nPlease retry in 6.5s."
)
RETRY_INFO = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "6.5s"}
QUOTA_FAILURE = {
    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
    "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaValue": "10"}],
}
GROQ_RPD = (
    "Rate limit reached for model `llama-3.3-70b-versatile` in organization `org_01hx` service tier "
    "`on_demand` on requests per day (RPD): Limit 1000, Used 1000, Requested 1. Please try again in "
    "1m26.4s. Visit https://console.groq.com/docs/rate-limits for more information."
)
GROQ_HEADERS = {
    "retry-after": "87",
    "x-ratelimit-limit-requests": "1000",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "1m26.4s",
    "x-ratelimit-limit-tokens": "12000",
    "x-ratelimit-remaining-tokens": "11800",
    "x-ratelimit-reset-tokens": "1s",
}
CEREBRAS_HEADERS = {
    "x-ratelimit-limit-requests-day": "14400",
    "x-ratelimit-remaining-requests-day": "0",
    "x-ratelimit-reset-requests-day": "33011.382867097855",
    "x-ratelimit-limit-tokens-minute": "60000",
    "x-ratelimit-remaining-tokens-minute": "59000",
    "x-ratelimit-reset-tokens-minute": "12.5",
}
OPENROUTER_DAY = {
    "error": {
        "message": "Rate limit exceeded: free-models-per-day. Add 10 credits to unlock 1000 free model "
        "requests per day",
        "code": 429,
        "metadata": {"headers": {"X-RateLimit-Limit": "50"}, "provider_name": None},
    },
    "user_id": "user_2xYz",
}

AN, GE, OA = anthropic.error_from_response, gemini.error_from_response, openai.error_from_response

CASES = [
    # --- OpenAI ---
    Case("openai-429-rpm", OA, 429, oai(OPENAI_RPM, "requests", "rate_limit_exceeded"), "rate_limit",
         "provider", retry_after=0.12, headers=OPENAI_HEADERS, learned={"rpm": 500, "tpm": 30000}),
    Case("openai-429-rpm-today", OA, 429, oai(OPENAI_RPM, "requests", "rate_limit_exceeded"), "rate_limit",
         "provider", retry_after=0.12, headers=OPENAI_HEADERS, keep_all=False),
    Case("openai-429-both-exhausted", OA, 429,
         oai("Rate limit reached for gpt-4o on tokens per min (TPM).", "tokens", "rate_limit_exceeded"),
         "rate_limit", retry_after=360.0, learned={"rpm": 60, "tpm": 150000},
         headers={"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0",
                  "x-ratelimit-reset-requests": "1s", "x-ratelimit-limit-tokens": "150000",
                  "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s"}),
    Case("openai-429-insufficient-quota", OA, 429,
         oai("You exceeded your current quota, please check your plan and billing details. For more "
             "information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes.",
             "insufficient_quota", "insufficient_quota"), "quota_exhausted"),
    Case("openai-429-request-too-large", OA, 429,
         oai("Request too large for gpt-4 in organization org-AbC on tokens per min (TPM): Limit 10000, "
             "Requested 15203. The input or output tokens must be reduced in order to run successfully.",
             "tokens", "rate_limit_exceeded"), "context_window"),
    Case("openai-400-context", OA, 400,
         oai("This model's maximum context length is 128000 tokens. However, your messages resulted in "
             "130321 tokens. Please reduce the length of the messages.", "invalid_request_error",
             "context_length_exceeded", "messages"), "context_window"),
    Case("openai-401", OA, 401,
         oai("Incorrect API key provided: sk-proj-****abcd. You can find your API key at "
             "https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key"),
         "auth"),
    Case("openai-403-region", OA, 403,
         oai("Country, region, or territory not supported", "request_forbidden",
             "unsupported_country_region_territory"), "auth", "provider"),
    Case("openai-403-project-model", OA, 403,
         oai("Project `proj_abc` does not have access to model `o3`", "invalid_request_error",
             "model_not_found"), "auth"),
    Case("azure-400-content-filter", OA, 400,
         oai("The response was filtered due to the prompt triggering Azure OpenAI's content management "
             "policy. Please modify your prompt and retry.", None, "content_filter", "prompt"),
         "content_policy"),
    Case("openai-400-safety-system", OA, 400,
         oai("Your request was rejected as a result of our safety system. Your prompt may contain text "
             "that is not allowed by our safety system.", "invalid_request_error",
             "content_policy_violation"), "content_policy"),
    Case("openai-400-invalid-value", OA, 400,
         oai("Invalid value for 'temperature': must be <= 2.", "invalid_request_error", "invalid_value",
             "temperature"), "bad_request", retryable=False),
    Case("openai-422", OA, 422, b'{"detail": "Unprocessable"}', "bad_request", retryable=False),
    Case("openai-404-model", OA, 404,
         oai("The model `gpt-9` does not exist or you do not have access to it.", "invalid_request_error",
             "model_not_found"), "bad_request"),
    Case("openai-409", OA, 409, oai("Conflict", "invalid_request_error"), "server"),
    Case("openai-500", OA, 500,
         oai("The server had an error while processing your request. Sorry about that!", "server_error"),
         "server", "provider"),
    Case("openai-502-html", OA, 502, b"<html><body>502 Bad Gateway</body></html>", "server", "provider"),
    Case("openai-503-retry-after", OA, 503,
         oai("The engine is currently overloaded, please try again later", "server_error"), "server",
         "provider", retry_after=20.0, headers={"Retry-After": "20"}),
    Case("azure-429-retry-words", OA, 429,
         oai("Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-02-01 "
             "have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 6 "
             "seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further "
             "increase the default rate limit.", None, "429"), "rate_limit", retry_after=6.0),
    Case("anthropic-400-usage-limits", AN, 400,
         ant("invalid_request_error", "You have reached your specified API usage limits. You will regain "
             "access on 2025-08-01 at 00:00 UTC."), "quota_exhausted"),
    # --- Anthropic ---
    Case("anthropic-429-headers", AN, 429, ant("rate_limit_error", ANTHROPIC_429), "rate_limit", "provider",
         retry_after=20.0, headers=ANTHROPIC_HEADERS, learned=ANTHROPIC_LEARNED),
    Case("anthropic-429-reset-only", AN, 429, ant("rate_limit_error", ANTHROPIC_429), "rate_limit",
         "provider", retry_after=45.0, learned=ANTHROPIC_LEARNED,
         headers={k: v for k, v in ANTHROPIC_HEADERS.items() if k != "retry-after"}),
    Case("anthropic-429-today", AN, 429, ant("rate_limit_error", ANTHROPIC_429), "rate_limit", "provider",
         retry_after=20.0, headers=ANTHROPIC_HEADERS, keep_all=False),
    Case("anthropic-529", AN, 529, ant("overloaded_error", "Overloaded"), "server", "provider"),
    Case("anthropic-400-prompt-too-long", AN, 400,
         ant("invalid_request_error", "prompt is too long: 208497 tokens > 200000 maximum"),
         "context_window"),
    Case("anthropic-400-context-limit", AN, 400,
         ant("invalid_request_error", "input length and `max_tokens` exceed context limit: 197000 + 8192 > "
             "200000, decrease input length or `max_tokens` and try again"), "context_window"),
    Case("anthropic-400-credit", AN, 400,
         ant("invalid_request_error", "Your credit balance is too low to access the Anthropic API. Please "
             "go to Plans & Billing to upgrade or purchase credits."), "quota_exhausted"),
    Case("anthropic-400-max-tokens", AN, 400,
         ant("invalid_request_error", "max_tokens: 100000 > 64000, which is the maximum allowed number of "
             "output tokens for claude-sonnet-4"), "bad_request", retryable=False),
    Case("anthropic-401", AN, 401, ant("authentication_error", "invalid x-api-key"), "auth"),
    Case("anthropic-402-billing", AN, 402, ant("billing_error", "Billing issue"), "quota_exhausted"),
    Case("anthropic-413", AN, 413, ant("request_too_large", "Request exceeds the maximum allowed number of "
         "bytes."), "bad_request", retryable=False),
    Case("anthropic-500", AN, 500, ant("api_error", "Internal server error"), "server", "provider"),
    # --- Gemini ---
    Case("gemini-429-per-minute", GE, 429,
         goog(429, "RESOURCE_EXHAUSTED", GEMINI_PER_MINUTE, QUOTA_FAILURE, RETRY_INFO), "rate_limit",
         retry_after=7.0),
    Case("gemini-429-no-retry-info", GE, 429,
         goog(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and "
              "billing details."), "quota_exhausted"),
    Case("gemini-400-token-count", GE, 400,
         goog(400, "INVALID_ARGUMENT", "The input token count (1200000) exceeds the maximum number of "
              "tokens allowed (1048576)."), "context_window"),
    Case("gemini-400-api-key-invalid", GE, 400,
         goog(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
              {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}), "auth"),
    Case("gemini-400-location", GE, 400,
         goog(400, "FAILED_PRECONDITION", "User location is not supported for the API use."), "auth",
         "provider"),
    Case("gemini-403", GE, 403, goog(403, "PERMISSION_DENIED", "Permission denied on resource project x."),
         "auth"),
    Case("gemini-503", GE, 503, goog(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
         "server", "provider"),
    Case("gemini-500", GE, 500, goog(500, "INTERNAL", "An internal error has occurred."), "server",
         "provider"),
    # --- OpenAI-compatible vendors ---
    Case("groq-429-rpd", OA, 429, oai(GROQ_RPD, "requests", "rate_limit_exceeded"), "quota_exhausted",
         "provider", retry_after=87.0, headers=GROQ_HEADERS, learned={"rpd": 1000, "tpm": 12000}),
    Case("groq-429-rpd-today", OA, 429, oai(GROQ_RPD, "requests", "rate_limit_exceeded"), "quota_exhausted",
         "provider", retry_after=87.0, headers=GROQ_HEADERS, keep_all=False),
    Case("groq-413-tpm", OA, 413,
         oai("Request too large for model `llama3-70b-8192` in organization `org_01hx` on tokens per minute "
             "(TPM): Limit 6000, Requested 7937, please reduce your message size and try again.", "tokens",
             "rate_limit_exceeded"), "context_window"),
    Case("cerebras-429-day-window", OA, 429, {"message": "Too many requests", "type": "too_many_requests"},
         "quota_exhausted", retry_after=33011.382867097855, headers=CEREBRAS_HEADERS,
         learned={"rpd": 14400, "tpm": 60000}),
    Case("cerebras-429-day-window-today", OA, 429, {"message": "Too many requests"}, "rate_limit",
         headers=CEREBRAS_HEADERS, keep_all=False),
    Case("openrouter-429-per-day", OA, 429, OPENROUTER_DAY, "quota_exhausted", retry_after=5000.0,
         headers={"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "0",
                  "X-RateLimit-Reset": epoch_ms(5000)},
         learned={"rpd": 50}),
    Case("openrouter-429-per-min", OA, 429,
         {"error": {"message": "Rate limit exceeded: free-models-per-min.", "code": 429}}, "rate_limit",
         retry_after=30.0, learned={"rpm": 20},
         headers={"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "0",
                  "X-RateLimit-Reset": epoch_ms(30)}),
    Case("openrouter-402-credits", OA, 402,
         {"error": {"message": "This request requires more credits, or fewer max_tokens. You requested up to "
                    "64000 tokens, but can only afford 2666.", "code": 402}}, "quota_exhausted"),
    Case("openrouter-403-moderation", OA, 403,
         {"error": {"message": 'openai/gpt-4o requires moderation on OpenRouter. Your input was flagged for '
                    '"harassment". No credits were charged.', "code": 403}}, "content_policy"),
    Case("deepseek-402-balance", OA, 402,
         oai("Insufficient Balance", "unknown_error", "invalid_request_error"), "quota_exhausted"),
    Case("deepseek-429", OA, 429, oai("Rate Limit Reached", "rate_limit_error"), "rate_limit"),
    Case("mistral-429-capacity", OA, 429,
         {"object": "error", "message": "Service tier capacity exceeded for this model.",
          "type": "invalid_request_error", "code": "3505"}, "server", "provider"),
    Case("mistral-400-context", OA, 400,
         {"object": "error", "message": "Prompt contains 40000 tokens and 0 draft tokens, too large for "
          "model with 32768 maximum context length", "type": "invalid_request_error", "code": "3051"},
         "context_window"),
    Case("together-400-context", OA, 400,
         oai("Input validation error: `inputs` tokens + `max_new_tokens` must be <= 32769. Given: 32000 "
             "`inputs` tokens and 2000 `max_new_tokens`", "invalid_request_error"), "context_window"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_vendor_errors_through_the_real_mappers(case: Case) -> None:
    err = upstream(case.mapper, case.status, case.headers, case.body, case.keep_all)
    verdict = classify(err, NOW)
    assert (verdict.kind, verdict.scope, verdict.retryable) == (case.kind, case.scope, case.retryable)
    if case.retry_after is None:
        assert verdict.retry_after is None
    else:
        assert verdict.retry_after == pytest.approx(case.retry_after, abs=0.01)
    assert verdict.learned == (case.learned if case.keep_all else {})
    assert verdict.reason.startswith("Provider 'p' ") and verdict.reason.endswith(".")


def test_transport_failures() -> None:
    def via(kind: Any) -> Verdict:
        return classify(openai.transport_error(TARGET, TransportError(kind, "Connection refused")), NOW)

    for kind, expected in (
        ("connect", "connection"),
        ("broken", "connection"),
        ("first_byte_timeout", "timeout"),
        ("idle_timeout", "timeout"),
    ):
        verdict = via(kind)
        assert (verdict.kind, verdict.scope, verdict.retryable) == (expected, "provider", True), kind


def test_malformed_and_incomplete_answers() -> None:
    for err in (
        anthropic.malformed(TARGET, "a malformed JSON body"),
        gemini.malformed(TARGET, "the body is not valid JSON"),
        UpstreamError("Provider 'p' returned a malformed JSON body.", status=502, provider="p"),
    ):
        verdict = classify(err, NOW)
        assert (verdict.kind, verdict.scope, verdict.retryable) == ("bad_response", "provider", True)
    incomplete = UpstreamError(
        "Provider 'p' ended the stream before it was complete.",
        code="upstream_stream_incomplete",
        provider="p",
    )
    assert classify(incomplete, NOW).kind == "connection"


def test_errors_reported_inside_streams() -> None:
    event = orjson.dumps(ant("overloaded_error", "Overloaded"))
    assert classify(anthropic.error_from_event(TARGET, event), NOW).kind == "server"
    payload = goog(429, "RESOURCE_EXHAUSTED", GEMINI_PER_MINUTE, RETRY_INFO)
    err = gemini.stream_error(TARGET, payload)
    assert err is not None
    verdict = classify(err, NOW)
    assert (verdict.kind, verdict.retry_after) == ("rate_limit", 7.0)
    # an OpenAI-dialect error object with no headers at all: the message's own hint is used
    no_headers = openai.error_from_response(TARGET, 429, {}, orjson.dumps(oai(GROQ_RPD)))
    verdict = classify(no_headers, NOW)
    assert (verdict.kind, verdict.retry_after) == ("quota_exhausted", pytest.approx(86.4))


def test_provider_name_is_not_a_signal_and_reason_has_no_secrets() -> None:
    target = Target(name="daily-quota", base_url="http://x", client=None, secrets=("sk-live-123",))
    body = orjson.dumps(oai("Rate limit exceeded for key sk-live-123", "requests", "rate_limit_exceeded"))
    verdict = classify(openai.error_from_response(target, 429, {"retry-after": "3"}, body), NOW)
    assert (verdict.kind, verdict.retry_after) == ("rate_limit", 3.0)
    assert "sk-live" not in verdict.reason


def test_long_waits_are_quotas() -> None:
    err = openai.error_from_response(TARGET, 429, {"retry-after": "7200"}, orjson.dumps(oai("Slow down")))
    assert classify(err, NOW).kind == "quota_exhausted"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h2m3.5s", 3723.5),
        ("250ms", 0.25),
        ("6m0s", 360.0),
        ("0s", 0.0),
        ("0", 0.0),
        ("1m26.4s", 86.4),
        ("2m59.56s", 179.56),
        ("7.66s", 7.66),
        ("1.5", 1.5),
        (" 20 ", 20.0),
        ("1500us", 0.0015),
        ("1h", 3600.0),
        ("", None),
        ("abc", None),
        ("-1s", None),
        ("1x", None),
        ("s", None),
        ("inf", None),
        ("1e3", None),
        ("1_000", None),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    result = parse_duration(text)
    assert result == (None if seconds is None else pytest.approx(seconds))


def test_reset_seconds() -> None:
    assert reset_seconds({"Retry-After-Ms": "1500", "retry-after": "9"}, NOW) == 1.5
    assert reset_seconds({"retry-after": "9"}, NOW) == 9.0
    http_date = format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True)
    assert reset_seconds({"Retry-After": http_date}, NOW) == pytest.approx(30)
    past = format_datetime(datetime.fromtimestamp(NOW - 30, UTC), usegmt=True)
    assert reset_seconds({"retry-after": past}, NOW) == 0.0
    # nothing exhausted: the headers do not ask for a wait
    assert (
        reset_seconds({"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "1s"}, NOW)
        is None
    )
    # an RFC 3339 reset with nanoseconds, an epoch-seconds reset
    nanos = rfc3339(12).replace("Z", ".123456789Z")
    anth = {"anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-requests-reset": nanos}
    assert reset_seconds(anth, NOW) == pytest.approx(12.123, abs=0.01)
    generic = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 40)}
    assert reset_seconds(generic, NOW) == pytest.approx(40)
    assert reset_seconds({}, NOW) is None
    assert reset_seconds({"retry-after": "soon"}, NOW) is None


def test_learned_limits_from_successful_answers() -> None:
    openai_ok = {
        "X-RateLimit-Limit-Requests": "5000",
        "X-RateLimit-Remaining-Requests": "4999",
        "X-RateLimit-Reset-Requests": "12ms",
        "X-RateLimit-Limit-Tokens": "800000",
        "X-RateLimit-Remaining-Tokens": "799000",
        "X-RateLimit-Reset-Tokens": "75ms",
    }
    assert learned_limits_from_headers(openai_ok) == {"rpm": 5000, "tpm": 800000}
    assert remaining_from_headers(openai_ok) == {"rpm": 4999, "tpm": 799000}
    # Groq's x-ratelimit-limit-requests is a day window: its reset is the time to refill what was used
    groq_ok = {
        "x-ratelimit-limit-requests": "14400",
        "x-ratelimit-remaining-requests": "14370",
        "x-ratelimit-reset-requests": "2m59.56s",
        "x-ratelimit-limit-tokens": "18000",
        "x-ratelimit-remaining-tokens": "17997",
        "x-ratelimit-reset-tokens": "7.66s",
    }
    assert learned_limits_from_headers(groq_ok) == {"rpd": 14400, "tpm": 18000}
    one_used = {**groq_ok, "x-ratelimit-remaining-requests": "14399", "x-ratelimit-reset-requests": "6s"}
    assert learned_limits_from_headers(one_used)["rpd"] == 14400
    assert learned_limits_from_headers(CIMultiDict(CEREBRAS_HEADERS)) == {"rpd": 14400, "tpm": 60000}
    assert learned_limits_from_headers(ANTHROPIC_HEADERS) == ANTHROPIC_LEARNED
    # OpenRouter's epoch-ms reset needs `now` to tell the window
    openrouter = {"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "19", "X-RateLimit-Reset": epoch_ms(40)}
    assert learned_limits_from_headers(openrouter) == {}
    assert learned_limits_from_headers(openrouter, NOW) == {"rpm": 20}
    assert learned_limits_from_headers({"x-ratelimit-limit-requests": "abc"}) == {}
    assert learned_limits_from_headers({"content-type": "application/json"}) == {}


def test_rate_limit_headers_constant() -> None:
    assert len(set(RATE_LIMIT_HEADERS)) == len(RATE_LIMIT_HEADERS)
    assert all(h == h.lower() for h in RATE_LIMIT_HEADERS)
    assert {"retry-after", "retry-after-ms"} <= set(RATE_LIMIT_HEADERS)
    for headers in (OPENAI_HEADERS, ANTHROPIC_HEADERS, GROQ_HEADERS, CEREBRAS_HEADERS):
        assert {h.lower() for h in headers} <= set(RATE_LIMIT_HEADERS)
