"""Token usage with one meaning across protocols.

`input_tokens` counts every prompt token, cached and cache-written ones included (OpenAI's
`prompt_tokens`); `cached_input_tokens` and `cache_write_tokens` are subsets of it. `output_tokens`
counts every generated token, reasoning included; `reasoning_tokens` is a subset of it. Adapters for
vendors that count differently (Anthropic reports cache reads apart from `input_tokens`) convert.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens
