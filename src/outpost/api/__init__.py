"""The local OpenAI- and Ollama-compatible API (``outpost serve``)."""

from outpost.api.server import create_app

__all__ = ["create_app"]
