"""Token counts where no upstream reports them (count_tokens on a non-Anthropic model).

Counted with the offline tokenizer (`accounting.tokenizer`): exact BPE counts per model family plus
OpenAI's documented chat framing; results are marked `estimated`.
"""

from __future__ import annotations

from omnirelay.accounting.tokenizer import input_usage
from omnirelay.canonical.request import ChatRequest
from omnirelay.canonical.usage import Usage


def estimate_usage(req: ChatRequest, model: str | None = None) -> Usage:
    """The request's input tokens as the model (default: the request's) would count them."""
    return input_usage(req, model)
