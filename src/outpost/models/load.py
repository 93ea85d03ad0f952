"""Turn a model name (registry, bundled) or a GGUF path into a loaded chat model, once per process.

It lives in ``models/`` because naming is the registry's business (Modelfile-derived models, bundled
aliases, hub pulls): the runtimes in ``llm/`` only load a file they are given and never import ``models/``.
A GGUF load costs seconds, so loaded bases are kept per (file, context size, threads, LoRA) and shared by
every derived model on top of them.
"""

from __future__ import annotations

import threading
from pathlib import Path

from outpost.llm.base import ChatModel
from outpost.models.derived import DerivedModel
from outpost.models.resolve import resolve_model
from outpost.settings import Settings

__all__ = ["load_chat_model", "loaded_models", "unload_all"]

_LOADED: dict[tuple[str, int, int | None, str | None], ChatModel] = {}
_LOCK = threading.Lock()


def _base_model(path: Path, n_ctx: int, n_threads: int | None, lora: str | None, name: str) -> ChatModel:
    from outpost.llm.llamacpp import LlamaCppModel  # llama.cpp loads only when a model is first needed

    key = (str(path), n_ctx, n_threads, lora)
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = LlamaCppModel(path, n_ctx=n_ctx, n_threads=n_threads, name=name, lora=lora)
        return _LOADED[key]


def load_chat_model(settings: Settings, name: str | None = None) -> ChatModel:
    """The model for ``name`` (default: the settings'); a Modelfile-derived one wraps its shared base."""
    resolved = resolve_model(settings.home, name or settings.llm_model)
    mf = resolved.modelfile
    n_ctx = (mf.n_ctx() if mf else None) or settings.n_ctx
    lora = mf.adapters[0] if mf and mf.adapters else None
    base = _base_model(resolved.path, n_ctx, settings.n_threads, lora, resolved.base_name)
    return DerivedModel(resolved.name, base, mf) if mf else base


def loaded_models() -> list[ChatModel]:
    """Models loaded in this process (``/api/ps``)."""
    with _LOCK:
        return list(_LOADED.values())


def unload_all() -> None:
    """Drop every loaded model (the API server's idle timeout calls this)."""
    with _LOCK:
        _LOADED.clear()
