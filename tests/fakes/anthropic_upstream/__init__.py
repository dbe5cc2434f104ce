"""A deterministic fake of the Anthropic Messages API, for exercising the gateway in tests.

Shapes follow what the official ``anthropic`` SDK parses (``anthropic/types``): JSON bodies, the
``{"type": "error", "error": {type, message}}`` envelope, and SSE streams whose events carry both an
``event:`` line and a ``data:`` line (no ``[DONE]``).

Requests are validated like the real API validates them (see ``rules.check``): required ``max_tokens``,
non-empty text blocks, tool ids matching ``^[a-zA-Z0-9_-]+$``, every ``tool_use`` answered by a
``tool_result`` in the next user turn (results first), thinking blocks replayed with a signature
this fake issued, and the last assistant tool-use turn starting with its thinking when thinking is on.

Answers: ``"echo: " + <last user text>``; after tool results ``"tool said: " + <their text>``;
with tools (and ``tool_choice`` not ``none``) one ``tool_use`` per tool (or one, with
``disable_parallel_tool_use``) whose input is ``{"query": <last user text>}``; with thinking, a
``"thinking about: <text>"`` block first. ``output_config.format`` gives JSON for the schema. Usage
counts words. The ``model`` picks special behaviour, see ``SPECIAL_MODELS``.
"""

from .app import anthropic_error, create_app
from .common import DEFAULT_MODELS, SPECIAL_MODELS, FakeAnthropicState, RecordedRequest, sign

__all__ = [
    "DEFAULT_MODELS",
    "SPECIAL_MODELS",
    "FakeAnthropicState",
    "RecordedRequest",
    "anthropic_error",
    "create_app",
    "sign",
]
