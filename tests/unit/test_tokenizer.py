"""The offline tokenizer and usage metering: exact counts, verified shipped files, no network."""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import tiktoken_ext.openai_public

from omnirelay.accounting import tokenizer
from omnirelay.accounting.metering import Generated, from_events, settle_usage
from omnirelay.accounting.tokenizer import count_input, count_text, encoding, encoding_name
from omnirelay.canonical.messages import Message, TextPart, ToolCallPart
from omnirelay.canonical.request import ChatRequest
from omnirelay.canonical.stream import BlockDelta, BlockStart, UsageEvent
from omnirelay.canonical.usage import Usage
from omnirelay.passthrough.anthropic import Texts as AnthropicTexts
from omnirelay.passthrough.gemini import complete_items
from omnirelay.passthrough.openai import Texts as OpenAITexts


def published_hashes() -> dict[str, str]:
    """expected_hash of each encoding as tiktoken's own openai_public.py states it."""
    source = Path(tiktoken_ext.openai_public.__file__).read_text()
    found = re.findall(r'encodings/(\w+)\.tiktoken",\s*expected_hash="([0-9a-f]{64})"', source)
    return dict(found)


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_shipped_files_are_the_published_ones(name: str) -> None:
    data = (tokenizer.ENCODINGS_DIR / f"{name}.tiktoken").read_bytes()
    assert hashlib.sha256(data).hexdigest() == published_hashes()[name] == tokenizer.SPECS[name][0]


def test_a_tampered_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cl100k_base.tiktoken").write_bytes(b"aGk= 0\n")
    monkeypatch.setattr(tokenizer, "ENCODINGS_DIR", tmp_path)
    with pytest.raises(ValueError, match="sha256"):
        tokenizer.load_ranks("cl100k_base")


def test_encodings_load_without_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the tokenizer tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    cache = tmp_path / "tiktoken-cache"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    monkeypatch.setattr(tokenizer, "_cache", {})
    assert encoding("o200k_base").encode_ordinary("hello world") == [24912, 2375]
    assert encoding("cl100k_base").encode_ordinary("hello world") == [15339, 1917]
    assert not cache.exists()  # tiktoken's download cache was never used


def test_known_counts() -> None:
    assert count_text("hello world", "gpt-4o") == 2
    assert count_text("hello world", "gpt-4") == 2
    assert count_text("", "gpt-4o") == 0
    # Special-token text is counted as text, never refused.
    assert count_text("<|endoftext|>", "gpt-4o") == len(
        encoding("o200k_base").encode_ordinary("<|endoftext|>")
    )
    text = "Tokenizers split 'Unbelievable!' differently: 12345 — ünïcödé"
    assert count_text(text, "gpt-4o") == len(encoding("o200k_base").encode_ordinary(text))
    assert count_text(text, "gpt-3.5-turbo") == len(encoding("cl100k_base").encode_ordinary(text))


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("claude-sonnet-4-6", "o200k_base"),
        ("gemini-2.5-flash", "o200k_base"),
        ("deepseek-chat", "o200k_base"),
        ("some-new-model", "o200k_base"),
    ],
)
def test_model_families(model: str, name: str) -> None:
    assert encoding_name(model) == name


def test_chat_framing() -> None:
    req = ChatRequest(model="gpt-4o", messages=[Message("user", [TextPart("hello world")])])
    # OpenAI's documented chat overhead: 3 a message, the role, the content, 3 priming the reply.
    assert count_input(req) == 3 + 1 + 2 + 3
    named = ChatRequest(model="gpt-4o", messages=[Message("user", [TextPart("hello world")], name="bob")])
    assert count_input(named) == 3 + 1 + 1 + 1 + 2 + 3
    call = Message("assistant", [ToolCallPart("c1", "lookup", '{"q": "x"}')])
    with_call = ChatRequest(model="gpt-4o", messages=[*req.messages, call])
    assert count_input(with_call) > count_input(req)


def test_events_are_grouped_per_block() -> None:
    events = [
        BlockStart(0, "thinking"),
        BlockStart(1, "text"),
        BlockDelta(0, "let me "),
        BlockDelta(1, "hel"),
        BlockDelta(0, "think"),
        BlockDelta(1, "lo"),
        BlockStart(2, "tool_call", tool_call_id="c", tool_name="lookup"),
        BlockDelta(2, '{"q":'),
        BlockDelta(2, ' "x"}'),
        UsageEvent(Usage()),
    ]
    generated = from_events(events)
    assert sorted(generated.texts) == sorted(["lookup", "hello", '{"q": "x"}'])
    assert generated.reasoning == ["let me think"]


def prompt() -> int:
    return 11


def test_settle_usage() -> None:
    gen = Generated(texts=["hello world"], reasoning=["hmm"])
    hmm = count_text("hmm", "gpt-4o")
    # Nothing reported: input counted, output counted, reasoning inside output.
    assert settle_usage("gpt-4o", gen, None, prompt, False) == Usage(
        input_tokens=11, output_tokens=2 + hmm, reasoning_tokens=hmm, estimated=True
    )
    # The prompt side the upstream reported is kept; the output grows to what was generated.
    reported = Usage(input_tokens=5, output_tokens=1, cached_input_tokens=2)
    assert settle_usage("gpt-4o", gen, reported, prompt, False) == Usage(
        input_tokens=5, output_tokens=2 + hmm, cached_input_tokens=2, reasoning_tokens=hmm, estimated=True
    )
    # A final upstream figure that covers the output is left alone.
    final = Usage(input_tokens=5, output_tokens=40)
    assert settle_usage("gpt-4o", gen, final, prompt, False) is final
    # An attempt cut before generating anything adds nothing; a complete empty answer pays its prompt.
    assert settle_usage("gpt-4o", Generated(), None, prompt, False) is None
    assert settle_usage("gpt-4o", Generated(), None, prompt, True) == Usage(input_tokens=11, estimated=True)


def test_openai_chunks_are_read_for_text_reasoning_and_tools() -> None:
    texts = OpenAITexts()
    for payload in [
        b'{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}',
        b'{"choices":[{"index":0,"delta":{"reasoning_content":"think"}}]}',
        b'{"choices":[{"index":0,"delta":{"content":"hel"}}]}',
        b'{"choices":[{"index":0,"delta":{"content":"lo"}}]}',
        b'{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"f","arguments":"{\\"a"}}]}}]}',
        b'{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\\":1}"}}]}}]}',
        b"[DONE]",
    ]:
        texts.feed(b"data: " + payload + b"\n\n")
    generated = texts.result()
    assert sorted(generated.texts) == sorted(["f", "hello", '{"a":1}'])
    assert generated.reasoning == ["think"]


def test_anthropic_events_are_read_for_text_thinking_and_tools() -> None:
    texts = AnthropicTexts()
    for name, data in [
        ("content_block_start", b'{"index":0,"content_block":{"type":"thinking","thinking":""}}'),
        ("content_block_delta", b'{"index":0,"delta":{"type":"thinking_delta","thinking":"hm"}}'),
        ("content_block_delta", b'{"index":0,"delta":{"type":"signature_delta","signature":"sig"}}'),
        ("content_block_start", b'{"index":1,"content_block":{"type":"text","text":""}}'),
        ("content_block_delta", b'{"index":1,"delta":{"type":"text_delta","text":"hi"}}'),
        ("content_block_start", b'{"index":2,"content_block":{"type":"tool_use","name":"f","input":{}}}'),
        ("content_block_delta", b'{"index":2,"delta":{"type":"input_json_delta","partial_json":"{}"}}'),
    ]:
        texts.feed(b"event: " + name.encode() + b"\ndata: " + data + b"\n\n")
    generated = texts.result()
    assert sorted(generated.texts) == sorted(["f", "hi", "{}"]) and generated.reasoning == ["hm"]


def test_a_cut_json_array_keeps_its_whole_items() -> None:
    assert complete_items(b'[{"a": 1},\r\n{"b": [2, 3]},\r\n{"c": "unfin') == [{"a": 1}, {"b": [2, 3]}]
    assert complete_items(b"[") == []
    assert complete_items(b'[{"a": 1}]') == [{"a": 1}]


def test_a_counting_failure_keeps_what_was_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> int:
        raise RuntimeError("no tokenizer")

    monkeypatch.setattr("omnirelay.accounting.metering.count_output", broken)
    reported = Usage(input_tokens=5)
    assert settle_usage("gpt-4o", Generated(texts=["x"]), reported, prompt, False) is reported
