"""The Anthropic Messages API (`POST /v1/messages`) as an upstream reached through the canonical model.

request.py   canonical request → Messages request body (every mapping decision is listed there)
response.py  Messages response → canonical response; stop reasons and usage
stream.py    Messages SSE events → canonical stream events
errors.py    Anthropic error answers and `event: error` → `UpstreamError`
adapter.py   `AnthropicAdapter`: headers, sending, reading, the stream loop
"""

from omnirelay.upstream.anthropic.adapter import ANTHROPIC_VERSION, AnthropicAdapter

__all__ = ["ANTHROPIC_VERSION", "AnthropicAdapter"]
