"""Test doubles: a fake OpenAI upstream and a background uvicorn runner."""

from .openai_upstream import DEFAULT_MODELS, FAILURE_MODELS, FakeState, create_app
from .server import ServerThread

__all__ = ["DEFAULT_MODELS", "FAILURE_MODELS", "FakeState", "ServerThread", "create_app"]
