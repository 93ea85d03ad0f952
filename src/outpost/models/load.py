"""Turn a model name (registry, bundled) or a GGUF path into a loaded chat model, once per process.

It lives in ``models/`` because naming is the registry's business (Modelfile-derived models, bundled
aliases, hub pulls): the runtimes in ``llm/`` only load a file they are given and never import ``models/``.
A GGUF load costs seconds, so loaded bases are kept per (file, context size, threads, LoRA) and shared by
every derived model on top of them.

Chat runtimes are the ``outpost.llms`` entry-point group (``outpost.plugins``): a name ``KIND:MODEL`` is handed
to the runtime registered as ``KIND`` (a factory ``(model, settings) -> ChatModel``); any other name to the
built-in ``llamacpp`` runtime, which registers there like a plugin. Models a plugin runtime makes are kept
too, so ``loaded_models`` and ``unload_all`` cover them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from outpost.errors import ConfigError
from outpost.llm.base import ChatModel
from outpost.models.derived import DerivedModel
from outpost.models.resolve import resolve_model
from outpost.plugins import Group, factory_entries
from outpost.settings import Settings

__all__ = ["DEFAULT_KIND", "RUNTIMES", "load_chat_model", "load_gguf_model", "loaded_models", "unload_all"]

ChatFactory = Callable[[str, Settings], ChatModel]
DEFAULT_KIND = "llamacpp"

_LOADED: dict[tuple[str, int, int | None, str | None], ChatModel] = {}
_LOCK = threading.Lock()


def _base_model(path: Path, n_ctx: int, n_threads: int | None, lora: str | None, name: str) -> ChatModel:
    from outpost.llm.llamacpp import LlamaCppModel  # llama.cpp loads only when a model is first needed
    from outpost.models.advisor import offload_layers

    key = (str(path), n_ctx, n_threads, lora)
    with _LOCK:
        if key not in _LOADED:
            layers = offload_layers(path, n_ctx)  # the advisor's placement; 0 without a GPU
            _LOADED[key] = LlamaCppModel(
                path, n_ctx=n_ctx, n_threads=n_threads, name=name, lora=lora, n_gpu_layers=layers
            )
        return _LOADED[key]


def load_gguf_model(name: str, settings: Settings) -> ChatModel:
    """The built-in runtime: a registry name or ``.gguf`` path on llama.cpp; a Modelfile-derived one wraps its
    shared base."""
    resolved = resolve_model(settings.home, name)
    mf = resolved.modelfile
    n_ctx = (mf.n_ctx() if mf else None) or settings.n_ctx
    lora = mf.adapters[0] if mf and mf.adapters else None
    base = _base_model(resolved.path, n_ctx, settings.n_threads, lora, resolved.base_name)
    return DerivedModel(resolved.name, base, mf) if mf else base


def register_builtins(register: Callable[..., None]) -> None:
    """The built-in runtime, registered like any plugin's (``outpost.llms`` entry point)."""
    register(DEFAULT_KIND, load_gguf_model)


RUNTIMES: Group[ChatFactory] = Group("outpost.llms", "chat runtime", factory_entries, register_builtins)


def _plugin_model(factory: ChatFactory, model: str, name: str, settings: Settings) -> ChatModel:
    key = (name, settings.n_ctx, settings.n_threads, None)
    with _LOCK:
        if key not in _LOADED:
            chat = factory(model, settings)
            if not isinstance(chat, ChatModel):
                raise ConfigError(
                    f"The chat runtime for {name!r} returned {type(chat).__name__}, not an outpost ChatModel: "
                    "the plugin is broken; choose another model with --model"
                )
            _LOADED[key] = chat
        return _LOADED[key]


def load_chat_model(settings: Settings, name: str | None = None) -> ChatModel:
    """The model for ``name`` (default: the settings'): ``KIND:MODEL`` from a plugin runtime, else llama.cpp."""
    name = name or settings.llm_model
    factory, model = RUNTIMES.choose(name, DEFAULT_KIND)
    if factory is load_gguf_model:  # it keeps its own cache of shared bases
        return load_gguf_model(model, settings)
    return _plugin_model(factory, model, name, settings)


def loaded_models() -> list[ChatModel]:
    """Models loaded in this process (``/api/ps``)."""
    with _LOCK:
        return list(_LOADED.values())


def unload_all() -> None:
    """Drop every loaded model (the API server's idle timeout calls this)."""
    with _LOCK:
        _LOADED.clear()
