"""Exact BPE token counts, offline, for when an upstream reports no usage.

The gateway ships the two tiktoken rank files it needs (`encodings/*.tiktoken`, see the README
there) and builds each `tiktoken.Encoding` itself from the shipped file, lazily on first use: no
download, no cache directory, no environment variable, nothing global that other code sees. Each
file's sha256 is checked against the hash tiktoken publishes for it before it is used.

OpenAI models count exactly (o200k_base for gpt-4o, gpt-4.1, gpt-5, the o-series and unknown modern
names; cl100k_base for gpt-4 and gpt-3.5). Claude, Gemini, DeepSeek, Qwen, Llama and others publish
no exact offline tokenizer for every version: they are counted with o200k_base, the closest general
one. Every count made here is an estimate of what the upstream would have billed (chat framing is
approximated) and usage built from it is marked `estimated`.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from omnirelay.canonical.messages import (
    ImagePart,
    Message,
    Part,
    RefusalPart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)
from omnirelay.canonical.request import ChatRequest
from omnirelay.canonical.usage import Usage
from omnirelay.transport import json

if TYPE_CHECKING:  # imported on first use: a gateway whose upstreams report usage never needs it
    import tiktoken

ENCODINGS_DIR = Path(__file__).resolve().parent / "encodings"

ENDOFTEXT = "<|endoftext|>"
ENDOFPROMPT = "<|endofprompt|>"

# As tiktoken_ext/openai_public.py defines them (tiktoken 0.14).
_O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|"""
    r"""\s*[\r\n]|\s+(?!\S)|\s"""
)

# name → (sha256 of the rank file, split pattern, special tokens)
SPECS: dict[str, tuple[str, str, dict[str, int]]] = {
    "o200k_base": (
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        _O200K_PATTERN,
        {ENDOFTEXT: 199999, ENDOFPROMPT: 200018},
    ),
    "cl100k_base": (
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        _CL100K_PATTERN,
        {
            ENDOFTEXT: 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            ENDOFPROMPT: 100276,
        },
    ),
}

# OpenAI's documented chat framing: every message costs a few tokens besides its content, a name
# one more, and every reply is primed with `<|start|>assistant<|message|>`.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
TOKENS_PER_TOOL = 8  # a function definition's framing, beyond its name, description and schema
TOKENS_PER_TOOL_CALL = 4  # a tool call's framing in a message, beyond its name and arguments
TOKENS_PER_IMAGE = 85  # a low-detail image; larger ones cost more, which is not known here

_CL100K_PREFIXES = ("gpt-4-", "gpt-35", "gpt-3.5", "text-embedding-ada", "text-embedding-3", "davinci-0")
_cache: dict[str, tiktoken.Encoding] = {}
_lock = threading.Lock()


def load_ranks(name: str) -> dict[bytes, int]:
    """The BPE ranks of a shipped encoding, after checking the file's sha256."""
    expected = SPECS[name][0]
    data = (ENCODINGS_DIR / f"{name}.tiktoken").read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ValueError(f"the shipped {name}.tiktoken has sha256 {actual}, expected {expected}")
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def encoding(name: str) -> tiktoken.Encoding:
    """A shipped encoding by name, built once on first use."""
    enc = _cache.get(name)
    if enc is not None:
        return enc
    with _lock:
        enc = _cache.get(name)
        if enc is None:
            _, pattern, special = SPECS[name]
            import tiktoken

            enc = tiktoken.Encoding(
                name, pat_str=pattern, mergeable_ranks=load_ranks(name), special_tokens=special
            )
            # The Rust core holds its own copy of the ranks; tiktoken keeps the Python dict only to
            # pickle the encoding, which the gateway never does. Dropping it saves ~28 MB (o200k).
            enc._mergeable_ranks = {}
            _cache[name] = enc
    return enc


def encoding_name(model: str) -> str:
    """The encoding a model is counted with (see the module docstring)."""
    name = model.rsplit("/", 1)[-1].lower()
    if name == "gpt-4" or name.startswith(_CL100K_PREFIXES):
        return "cl100k_base"
    return "o200k_base"


def encoding_of(model: str) -> tiktoken.Encoding:
    return encoding(encoding_name(model))


def loaded(model: str) -> bool:
    """Whether the model's encoding is already built (counting then costs no load)."""
    return encoding_name(model) in _cache


def count_text(text: str, model: str) -> int:
    """Tokens of a text as the model's encoding splits it (special-token strings count as text)."""
    if not text:
        return 0
    return len(encoding(encoding_name(model)).encode_ordinary(text))


def _part_texts(part: Part, out: list[str]) -> int:
    """Collect a part's texts; return the framing tokens it adds beyond them."""
    if isinstance(part, (TextPart, ThinkingPart, RefusalPart)):
        out.append(part.text)
    elif isinstance(part, ToolCallPart):
        out.append(part.name)
        out.append(part.arguments)
        return TOKENS_PER_TOOL_CALL
    elif isinstance(part, ToolResultPart):
        return sum(_part_texts(p, out) for p in part.content)
    elif isinstance(part, ImagePart):
        return TOKENS_PER_IMAGE
    return 0


def _message_texts(message: Message, out: list[str]) -> int:
    extra = TOKENS_PER_MESSAGE
    out.append(message.role)
    if message.name:
        out.append(message.name)
        extra += TOKENS_PER_NAME
    return extra + sum(_part_texts(p, out) for p in message.parts)


def count_input(req: ChatRequest, model: str | None = None) -> int:
    """The prompt tokens of a request: every message's text, its framing, and the tool definitions."""
    texts: list[str] = []
    extra = REPLY_PRIMING + sum(_message_texts(m, texts) for m in req.messages)
    for tool in req.tools:
        texts.append(tool.name)
        texts.append(tool.description or "")
        if tool.parameters:
            texts.append(json.dumps(tool.parameters).decode())
        extra += TOKENS_PER_TOOL
    if req.response_format is not None and req.response_format.schema:
        texts.append(json.dumps(req.response_format.schema).decode())
    encode = encoding(encoding_name(model or req.model)).encode_ordinary
    return extra + sum(len(encode(t)) for t in texts if t)


def count_output(texts: list[str], model: str) -> int:
    """The generated tokens of an answer given as its texts (text, reasoning, tool names, arguments)."""
    if not any(texts):
        return 0
    encode = encoding(encoding_name(model)).encode_ordinary
    return sum(len(encode(t)) for t in texts if t)


def input_usage(req: ChatRequest, model: str | None = None) -> Usage:
    return Usage(input_tokens=count_input(req, model), estimated=True)
