"""Local LLM runtime: a chat-model interface, the llama.cpp backend, bundled-model lookup.

Turning a model *name* into a loaded model is the registry's business (``outpost.models.load``):
this package never imports ``outpost.models``.
"""

from outpost.llm.base import ChatModel, GenerationParams, Message
from outpost.llm.bundled import bundled_models, resolve_gguf

__all__ = ["ChatModel", "GenerationParams", "Message", "bundled_models", "resolve_gguf"]
