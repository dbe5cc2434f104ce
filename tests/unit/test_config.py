from __future__ import annotations

from pathlib import Path

import pytest

from omnirelay import config
from omnirelay.config import ConfigError


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        config.parse(text, "omnirelay.yaml")
    return str(info.value)


def test_documented_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNIRELAY_MASTER_KEY", "sk-master-from-env")
    cfg = config.parse(
        "master_key: ${OMNIRELAY_MASTER_KEY}\n"
        "providers:\n"
        "  - name: oai\n"
        "    type: openai\n"
        "    base_url: http://127.0.0.1:9001/v1\n"
        "    api_keys: [sk-a, sk-b]\n"
        "    models: [gpt-4o-mini, {name: fast, upstream: gpt-4o-mini-2024-07-18}]\n"
    )
    assert cfg.master_key == "sk-master-from-env"
    provider = cfg.providers[0]
    assert provider.api_keys == ["sk-a", "sk-b"]
    assert provider.model_map() == {"gpt-4o-mini": "gpt-4o-mini", "fast": "gpt-4o-mini-2024-07-18"}


def test_preset_fills_url_key_and_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-ds-1,sk-ds-2")
    cfg = config.parse("providers:\n  - {name: ds, type: deepseek}\n")
    provider = cfg.providers[0]
    assert provider.api_keys == ["sk-ds-1", "sk-ds-2"]
    assert "deepseek-chat" in provider.model_map()


def test_environment_default_has_mock_and_detected_presets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "gsk-1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    names = [p.name for p in config.from_environment().providers]
    assert names[0] == "mock" and "groq" in names and "openai" not in names


def test_errors_name_line_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    assert error_of("providers:\n  - name: a\n    type: foo\n").startswith(
        "omnirelay.yaml:3: providers[0].type: unknown"
    )
    assert "omnirelay.yaml:4: providers[0].models[0].upstreem: unknown key" in error_of(
        "providers:\n  - name: a\n    type: mock\n    models: [{name: x, upstreem: y}]\n"
    )
    assert error_of("master_key: ${NOT_SET_ANYWHERE}\n") == (
        "omnirelay.yaml:1: environment variable NOT_SET_ANYWHERE is not set"
    )
    assert error_of("a: [\n").startswith("omnirelay.yaml:2:1: invalid YAML")
    assert "needs a base_url" in error_of(
        "providers:\n - name: a\n   type: openai-compatible\n   models: [x]\n"
    )
    assert "used twice" in error_of("providers:\n - {name: a, type: mock}\n - {name: a, type: mock}\n")
    assert error_of("server:\n  port: abc\n").startswith("omnirelay.yaml:2: server.port:")
    assert "has no api_keys" in error_of(
        "providers:\n - {name: o, type: openai, base_url: 'http://x', models: [m]}\n"
    )


def test_default_value_syntax(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PORT_X", raising=False)
    assert config.parse("server:\n  port: ${PORT_X:-9090}\n").server.port == 9090


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(Path("/nonexistent/omnirelay.yaml"))
