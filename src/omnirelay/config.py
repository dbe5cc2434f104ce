"""Declarative configuration: YAML with ${VAR} substitution, validated before anything starts.

A bad file yields one `ConfigError` naming the file, the line and key, and what is wrong.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from omnirelay.providers.presets import PRESETS

PROVIDER_TYPES = ("openai", "openai-compatible", "azure", "mock")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    pass


# Validation context flag: validate a provider without filling its keys from the environment.
NO_ENV_KEYS = "no_env_keys"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Caps(_Strict):
    """Free-tier style caps, counted by the gateway per (provider, key, model)."""

    rpm: int | None = Field(None, ge=1)
    rpd: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    tpd: int | None = Field(None, ge=1)


class ModelEntry(Caps):
    name: str = Field(min_length=1)
    upstream: str | None = None
    priority: int | None = None  # overrides the provider's
    weight: float | None = Field(None, gt=0)


class TimeoutsConfig(_Strict):
    connect: float = Field(10.0, gt=0)
    first_byte: float = Field(300.0, gt=0)
    idle: float = Field(300.0, gt=0)


class MockOptions(_Strict):
    latency_ms: float = Field(0.0, ge=0)
    chunks: int = Field(4, ge=1, le=10_000)
    chunk_delay_ms: float = Field(0.0, ge=0)
    tool_calls: bool = True


class ProviderConfig(Caps):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    priority: int = 0  # lower is tried first
    weight: float = Field(1.0, gt=0)  # share of traffic within a priority
    health_check: bool = False  # background probes of every key (off by default: they cost requests)
    type: str
    base_url: str | None = None
    api_keys: list[str] = Field(default_factory=list)
    models: list[str | ModelEntry] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    max_connections: int = Field(512, ge=1)
    # Ask OpenAI-dialect upstreams for usage in streams (stream_options.include_usage). Turn off only
    # for an upstream that rejects the option; its streamed requests then record no token counts.
    stream_usage: bool = True
    api_version: str = "2024-10-21"  # Azure OpenAI only
    mock: MockOptions = Field(default_factory=MockOptions)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in PROVIDER_TYPES and value not in PRESETS:
            known = ", ".join([*PROVIDER_TYPES, *sorted(set(PRESETS) - set(PROVIDER_TYPES))])
            raise ValueError(f"unknown provider type {value!r}; expected one of: {known}")
        return value

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"base_url must be an http(s) URL, got {value!r}")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _complete(self, info: ValidationInfo) -> ProviderConfig:
        preset = PRESETS.get(self.type)
        # A provider defined through the admin API never takes a key from the host's environment.
        from_env = not (info.context or {}).get(NO_ENV_KEYS)
        if self.type in ("openai-compatible", "azure") and not self.base_url:
            raise ValueError(f"type {self.type} needs a base_url")
        if self.type != "mock":
            if not self.api_keys and preset is not None and from_env:
                self.api_keys = keys_from_env(preset.key_env)
            if (
                not self.api_keys
                and (preset is None or preset.needs_key)
                and self.type != "openai-compatible"
            ):
                env = " or ".join(preset.key_env) if preset else "api_keys"
                raise ValueError(f"provider {self.name!r} has no api_keys (set api_keys or {env})")
        if not self.models and preset is not None:
            self.models = list(preset.models)
        if not self.models and self.type == "mock":
            self.models = ["mock"]
        if not self.models:
            raise ValueError(f"provider {self.name!r} lists no models")
        return self

    def model_map(self) -> dict[str, str]:
        """Public model name → upstream model name."""
        out: dict[str, str] = {}
        for entry in self.models:
            if isinstance(entry, str):
                out[entry] = entry
            else:
                out[entry.name] = entry.upstream or entry.name
        return out


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    graceful_shutdown_seconds: float = Field(30.0, ge=0)
    # Browser clients (NextChat, LobeChat in client mode) call the gateway cross-origin. Keys are
    # bearer tokens, never cookies, so allowing any origin exposes nothing; narrow it if you like.
    cors_origins: list[str] = Field(default_factory=lambda: ["*"])


FallbackTrigger = Literal["rate_limit", "server", "timeout", "connection", "context_window", "content_policy"]
DEFAULT_TRIGGERS: list[FallbackTrigger] = ["rate_limit", "server", "timeout", "connection"]


class RouteConfig(_Strict):
    """A virtual model: an ordered fallback chain of models, `provider/model`s or whole providers."""

    targets: list[str] = Field(min_length=1)
    strategy: Literal["priority", "weighted", "least-busy", "lowest-latency", "cheapest"] = "priority"
    fallback_on: list[FallbackTrigger] = Field(default_factory=lambda: list(DEFAULT_TRIGGERS))
    max_attempts: int | None = Field(None, ge=1)
    deadline_seconds: float | None = Field(None, gt=0)


class BreakerConfig(_Strict):
    failures: int = Field(5, ge=1)
    window_seconds: float = Field(60.0, gt=0)
    open_seconds: float = Field(30.0, gt=0)


class HealthConfig(_Strict):
    interval_seconds: float = Field(300.0, gt=0)
    jitter: float = Field(0.2, ge=0, le=1)
    timeout_seconds: float = Field(10.0, gt=0)


class RoutingConfig(_Strict):
    strategy: Literal["priority", "weighted", "least-busy", "lowest-latency", "cheapest"] = "priority"
    fallback_on: list[FallbackTrigger] = Field(default_factory=lambda: list(DEFAULT_TRIGGERS))
    max_attempts: int = Field(4, ge=1)
    deadline_seconds: float = Field(120.0, gt=0)
    backoff_seconds: float = Field(0.25, ge=0)  # base of the jittered backoff when retrying one deployment
    wait_for_recovery: bool = True  # when every candidate cools down, wait for the first one if in time
    max_wait_seconds: float = Field(10.0, ge=0)  # the longest such wait
    rate_limit_ladder: list[float] = Field(default_factory=lambda: [2.0, 10.0, 30.0, 120.0, 600.0])
    quota_ladder: list[float] = Field(default_factory=lambda: [300.0, 1800.0, 3600.0, 21600.0, 86400.0])
    sticky: bool = True
    sticky_ttl_seconds: float = Field(1800.0, gt=0)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)


Credits = str | int  # a decimal amount of credits, e.g. "0.15" (floats are refused: money is exact)


class PriceConfig(_Strict):
    """A model's price in credits; token rates are per 1M tokens."""

    input: Credits
    output: Credits
    cached_input: Credits | None = None
    cache_write: Credits | None = None
    reasoning: Credits | None = None
    per_image: Credits = 0
    per_audio_second: Credits = 0
    per_character: Credits = 0
    per_request: Credits = 0


FreeTierFamily = Literal["chat", "embeddings"]


class FreeTierConfig(_Strict):
    """Daily request caps (UTC days) per client IP across keys and per key, counted separately per
    endpoint family; the master key is exempt. A family left out is not capped."""

    per_ip_daily: dict[FreeTierFamily, int] = Field(default_factory=dict)
    per_key_daily: dict[FreeTierFamily, int] = Field(default_factory=dict)

    @field_validator("per_ip_daily", "per_key_daily")
    @classmethod
    def _positive(cls, value: dict[FreeTierFamily, int]) -> dict[FreeTierFamily, int]:
        for family, cap in value.items():
            if cap < 1:
                raise ValueError(f"the {family} cap must be at least 1 (leave it out for no cap)")
        return value


class BillingConfig(_Strict):
    # A model with no price (neither shipped nor configured): "free" serves it, charges nothing and
    # flags the usage record; "refuse" answers 403 before calling the upstream.
    unpriced_models: Literal["free", "refuse"] = "free"
    # The output bound of a quota reservation when the request declares no max_tokens.
    default_max_output_tokens: int = Field(4096, ge=1)
    # How many active keys a user may create for itself through the self-service API.
    max_keys_per_user: int = Field(50, ge=1, le=1000)
    free_tier: FreeTierConfig = Field(default_factory=FreeTierConfig)


class UsageConfig(_Strict):
    flush_interval_seconds: float = Field(0.5, gt=0)
    max_batch: int = Field(1000, ge=1)


class LoggingConfig(_Strict):
    """Request/response body logging (off by default: bodies hold what users write). A key's own
    `log_bodies` (true/false) overrides `bodies`. Headers are never logged."""

    bodies: bool = False
    body_retention_days: float = Field(7.0, gt=0)  # older bodies are deleted (hourly and at start)
    max_body_bytes: int = Field(64 * 1024, ge=0)  # each of request and response is cut here


class Config(_Strict):
    master_key: str | None = Field(None, min_length=8)
    data_dir: str | None = None
    database_url: str | None = None
    http_client: Literal["aiohttp", "httpx"] = "aiohttp"
    server: ServerConfig = Field(default_factory=ServerConfig)
    usage: UsageConfig = Field(default_factory=UsageConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    routing: RoutingConfig = Field(default_factory=lambda: RoutingConfig())
    providers: list[ProviderConfig] = Field(default_factory=list)
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    prices: dict[str, PriceConfig] = Field(default_factory=dict)  # model or provider/model → price
    billing: BillingConfig = Field(default_factory=BillingConfig)

    @field_validator("routes", mode="before")
    @classmethod
    def _route_shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"targets": v} if isinstance(v, list) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: set[str] = set()
        for provider in self.providers:
            if provider.name in seen:
                raise ValueError(f"provider name {provider.name!r} is used twice")
            seen.add(provider.name)
        return self


def keys_from_env(names: tuple[str, ...]) -> list[str]:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return [k.strip() for k in value.split(",") if k.strip()]
    return []


# --- loading ------------------------------------------------------------------------------------


def _substitute(node: yaml.Node, path: str) -> None:
    if isinstance(node, yaml.ScalarNode):
        if "${" in node.value:

            def repl(m: re.Match[str]) -> str:
                value = os.environ.get(m.group(1))
                if value is None:
                    if m.group(2) is not None:
                        return m.group(2)
                    raise ConfigError(
                        f"{path}:{node.start_mark.line + 1}: environment variable {m.group(1)} is not set"
                    )
                return value

            node.value = _VAR.sub(repl, node.value)
    elif isinstance(node, yaml.SequenceNode):
        for child in node.value:
            _substitute(child, path)
    elif isinstance(node, yaml.MappingNode):
        for _key, child in node.value:
            _substitute(child, path)


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                return line
            line = match[0].start_mark.line + 1
            node = match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse(text: str, path: str = "<config>") -> Config:
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            if root is not None:
                _substitute(root, path)
            data = loader.construct_document(root) if root is not None else {}
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        raise ConfigError(f"{where}: invalid YAML: {exc.problem or exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        # For a union, the branch that got furthest explains the problem best.
        first = max(exc.errors(), key=lambda e: len(e["loc"]))
        # Drop pydantic's union-branch markers (e.g. 'str', 'ModelEntry') from the location.
        loc = tuple(p for p in first["loc"] if not _is_union_tag(p))
        line = _line_of(root, loc)
        where = f"{path}:{line}" if line else path
        key = _dotted(loc) or "(top level)"
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and indentation)"
        more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
        raise ConfigError(f"{where}: {key}: {message}{more}") from None


def _is_union_tag(part: int | str) -> bool:
    """pydantic puts the tried branch of a union into `loc` ('str', 'ModelEntry', 'function-after[..]')."""
    return isinstance(part, str) and (
        part in {"str", "int", "float", "bool", "list", "dict"} or part[:1].isupper() or "[" in part
    )


def load(path: str | Path) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the config file: {exc.strerror}") from None
    return parse(text, str(p))


def from_environment() -> Config:
    """The zero-config default: the mock provider plus every preset whose key is in the environment."""
    providers: list[dict[str, Any]] = [{"name": "mock", "type": "mock"}]
    for name, preset in PRESETS.items():
        if preset.needs_key and preset.models and keys_from_env(preset.key_env):
            providers.append({"name": name, "type": name})
    return Config.model_validate({"providers": providers})
