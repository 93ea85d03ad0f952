"""Local LLM runtime: a chat-model interface, the llama.cpp backend, bundled-model lookup."""

from outpost.llm.base import ChatModel, GenerationParams, Message
from outpost.llm.bundled import bundled_models, resolve_gguf
from outpost.llm.factory import load_chat_model

__all__ = ["ChatModel", "GenerationParams", "Message", "bundled_models", "load_chat_model", "resolve_gguf"]
