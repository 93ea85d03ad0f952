"""Load a chat model by name or path, once per process (a GGUF load costs seconds)."""

from __future__ import annotations

from outpost.llm.base import ChatModel
from outpost.llm.bundled import resolve_gguf
from outpost.settings import Settings

__all__ = ["load_chat_model"]

_LOADED: dict[tuple[str, int, int | None], ChatModel] = {}


def load_chat_model(settings: Settings, name: str | None = None) -> ChatModel:
    from outpost.llm.llamacpp import LlamaCppModel

    name = name or settings.llm_model
    path = resolve_gguf(name)
    key = (str(path), settings.n_ctx, settings.n_threads)
    if key not in _LOADED:
        _LOADED[key] = LlamaCppModel(path, n_ctx=settings.n_ctx, n_threads=settings.n_threads, name=name)
    return _LOADED[key]
