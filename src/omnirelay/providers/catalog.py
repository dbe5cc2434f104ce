"""Configuration → runtime providers: a target to reach, keys to use in turn, models to serve."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omnirelay.config import Config, ProviderConfig
from omnirelay.providers.presets import PRESETS
from omnirelay.transport.fetch import fetch_media
from omnirelay.transport.http import HttpClient, Timeouts, make_client
from omnirelay.upstream.anthropic import AnthropicAdapter
from omnirelay.upstream.base import ChatAdapter, Target
from omnirelay.upstream.gemini import GeminiAdapter
from omnirelay.upstream.mock import MockAdapter
from omnirelay.upstream.openai_chat import OpenAIChatAdapter

# Wire dialect → adapter for upstreams reached through the canonical model (a client of another
# protocol). Same-protocol traffic is relayed by `omnirelay.passthrough` instead.
ADAPTERS: dict[str, Any] = {
    "mock": MockAdapter,
    "openai": OpenAIChatAdapter,
    "anthropic": AnthropicAdapter,
    "gemini": lambda target: GeminiAdapter(target, fetch_image=fetch_media),
}


@dataclass(slots=True)
class Provider:
    name: str
    type: str
    dialect: str
    target: Target
    keys: list[str]
    models: dict[str, str]  # public name → upstream name
    adapter: ChatAdapter | None = None
    stream_usage: bool = True
    config: ProviderConfig | None = field(default=None, repr=False)

    async def close(self) -> None:
        if self.target.client is not None:
            await self.target.client.close()


def _dialect(cfg: ProviderConfig) -> str:
    if cfg.type == "mock":
        return "mock"
    preset = PRESETS.get(cfg.type)
    return preset.dialect if preset else "openai"


def build_provider(cfg: ProviderConfig, http_client: str) -> Provider:
    dialect = _dialect(cfg)
    preset = PRESETS.get(cfg.type)
    base_url = cfg.base_url or (preset.base_url if preset else "")
    client: HttpClient | None = None
    if dialect != "mock":
        t = cfg.timeouts
        client = make_client(http_client, Timeouts(t.connect, t.first_byte, t.idle), cfg.max_connections)
    target = Target(
        name=cfg.name,
        base_url=base_url,
        client=client,
        headers=dict(cfg.headers),
        # header values may be credentials too (e.g. a channel's auth header): scrub the longer ones
        secrets=tuple(cfg.api_keys) + tuple(v for v in cfg.headers.values() if len(v) >= 12),
        options=cfg.mock if dialect == "mock" else None,
        azure_api_version=cfg.api_version if cfg.type == "azure" else None,
    )
    adapter_cls = ADAPTERS.get(dialect)
    return Provider(
        name=cfg.name,
        type=cfg.type,
        dialect=dialect,
        target=target,
        keys=list(cfg.api_keys),
        models=cfg.model_map(),
        adapter=adapter_cls(target) if adapter_cls else None,
        stream_usage=cfg.stream_usage,
        config=cfg,
    )


def build_providers(config: Config) -> list[Provider]:
    return [build_provider(p, config.http_client) for p in config.providers]
