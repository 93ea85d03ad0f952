"""A model derived by a Modelfile: the base model's weights, plus a system prompt, history and defaults.

Derived models share the loaded base (one llama.cpp instance per file and context size); the
overlay is applied per request, so ``support`` and ``smollm2`` cost one model's memory. It lives beside
the Modelfile parser it applies: ``llm/`` holds the runtimes and never imports ``models/``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator

from outpost.llm.base import ChatModel, GenerationParams, Message
from outpost.models.modelfile import Modelfile

__all__ = ["DerivedModel"]

log = logging.getLogger(__name__)


class DerivedModel(ChatModel):
    def __init__(self, name: str, base: ChatModel, modelfile: Modelfile) -> None:
        self.name = name
        self.base = base
        self.modelfile = modelfile
        self.n_ctx = base.n_ctx
        _warn_unused(name, tuple(modelfile.unused()))

    def default_params(self, base: GenerationParams) -> GenerationParams:
        return self.modelfile.generation_params(base)

    def prepare(self, messages: list[Message]) -> list[Message]:
        return self.modelfile.messages_for(messages)

    def prompt_tokens(self, messages: list[Message]) -> int:
        return self.base.prompt_tokens(self.prepare(messages))

    def stream(
        self, messages: list[Message], params: GenerationParams, extra_stop: list[str] | None = None
    ) -> Iterator[str]:
        yield from self.base.stream(self.prepare(messages), params, extra_stop=self._stops(extra_stop))

    def stream_scored(
        self,
        messages: list[Message],
        params: GenerationParams,
        logprobs: list[float],
        extra_stop: list[str] | None = None,
    ) -> Iterator[str]:
        yield from self.base.stream_scored(self.prepare(messages), params, logprobs, self._stops(extra_stop))

    def _stops(self, extra_stop: list[str] | None) -> list[str] | None:
        """The Modelfile's ``PARAMETER stop`` sequences hold alongside a request's own (``params.stop``)."""
        stop = [*self.modelfile.stops(), *(extra_stop or [])]
        return stop or None

    def stream_raw(self, prompt: str, params: GenerationParams, stop: list[str] | None = None) -> Iterator[str]:
        return self.base.stream_raw(prompt, params, stop)


@functools.cache
def _warn_unused(name: str, notes: tuple[str, ...]) -> None:
    """Once per model and process (a derived model is rebuilt per request): the server log says what its
    Modelfile sets that is not applied (``outpost models create`` says it on stderr too)."""
    for note in notes:
        log.warning("model %s: %s", name, note)
