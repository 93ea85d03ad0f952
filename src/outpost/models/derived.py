"""A model derived by a Modelfile: the base model's weights, plus a system prompt, history and defaults.

Derived models share the loaded base (one llama.cpp instance per file and context size); the
overlay is applied per request, so ``support`` and ``smollm2`` cost one model's memory. It lives beside
the Modelfile parser it applies: ``llm/`` holds the runtimes and never imports ``models/``.
"""

from __future__ import annotations

from collections.abc import Iterator

from outpost.llm.base import ChatModel, GenerationParams, Message
from outpost.models.modelfile import Modelfile

__all__ = ["DerivedModel"]


class DerivedModel(ChatModel):
    def __init__(self, name: str, base: ChatModel, modelfile: Modelfile) -> None:
        self.name = name
        self.base = base
        self.modelfile = modelfile
        self.n_ctx = base.n_ctx

    def default_params(self, base: GenerationParams) -> GenerationParams:
        return self.modelfile.generation_params(base)

    def prepare(self, messages: list[Message]) -> list[Message]:
        return self.modelfile.messages_for(messages)

    def prompt_tokens(self, messages: list[Message]) -> int:
        return self.base.prompt_tokens(self.prepare(messages))

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[str]:
        stop = self.modelfile.parameters.get("stop")
        yield from self.base.stream(self.prepare(messages), params, extra_stop=list(stop) if stop else None)

    def stream_raw(self, prompt: str, params: GenerationParams, stop: list[str] | None = None) -> Iterator[str]:
        return self.base.stream_raw(prompt, params, stop)
