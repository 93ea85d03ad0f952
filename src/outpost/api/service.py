"""What both API dialects share: resolving a model name, RAG over a collection, warm models, embeddings.

``rag:<collection>`` as a model name answers from that collection with the default chat model; the
answer's sources come back in an extra ``sources`` field. Models stay loaded until they have been
idle for ``keep_alive`` seconds; llama.cpp contexts serialise concurrent requests themselves.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from outpost.app import Outpost
from outpost.errors import ConfigError, ModelNotFoundError
from outpost.llm.base import ChatModel, GenerationParams, Message
from outpost.models.load import load_chat_model, unload_all
from outpost.models.registry import Registry
from outpost.models.resolve import check_registry_name
from outpost.rag import AnswerStream
from outpost.records import Source
from outpost.settings import Settings
from outpost.store.sqlite import check_collection_name

__all__ = ["ApiService", "Generation", "RAG_PREFIX"]

RAG_PREFIX = "rag:"


@dataclass
class Generation:
    """One request's generation: iterate ``pieces``; counts and sources are filled as it runs."""

    model: str
    pieces: Iterator[str]
    prompt_tokens: int
    max_tokens: int
    sources: list[Source] = field(default_factory=list)
    answer_id: str = ""  # RAG answers: vote on it with POST /v1/feedback
    completion_tokens: int = 0
    started: float = field(default_factory=time.perf_counter)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])
    answer: AnswerStream | None = None  # RAG: grounded once the pieces are exhausted

    def grounding(self) -> dict[str, Any] | None:
        """RAG answers: the grounding verdict for the final event / response (``None`` otherwise)."""
        done = self.answer.answer if self.answer is not None else None
        if done is None:
            return None
        return {
            "status": done.grounding,
            "answer": done.text,
            "claims": [asdict(c) for c in done.claims],
            "evidence": [asdict(e) for e in done.evidence],
            "ms": done.grounding_ms,
            "confidence": done.confidence,
        }

    def __iter__(self) -> Iterator[str]:
        for piece in self.pieces:
            self.completion_tokens += 1
            yield piece

    @property
    def finish_reason(self) -> str:
        return "length" if self.completion_tokens >= self.max_tokens else "stop"

    def close(self) -> None:
        """End the generation now, read to its end or not (``outpost/streaming.py``: a client that went away).

        Why: a generation holds its model's lock while it runs (requests queue per model); left suspended, it kept
        the lock until the garbage collector found it, and every later request to that model waited.
        """
        close = getattr(self.pieces, "close", None)
        if close is not None:
            close()


class ApiService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.outpost = Outpost(settings=settings)
        self.registry = Registry(settings.home)
        self.last_used = time.monotonic()
        self.in_flight = 0
        self._lock = threading.Lock()

    # -- models -------------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        names = [e.name for e in self.registry.list()]
        return names + [RAG_PREFIX + c.name for c in self.outpost.collections()]

    def chat_model(self, name: str) -> ChatModel:
        """The model a request names: ``rag:<collection>`` or a registered name, never a path (issue 10)."""
        self.touch()
        if name.startswith(RAG_PREFIX):
            check_collection_name(name.removeprefix(RAG_PREFIX))
            return load_chat_model(self.settings, self.settings.llm_model)  # the owner's setting may be a path
        return load_chat_model(self.settings, check_registry_name(name))

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def unload_if_idle(self) -> bool:
        if self.in_flight == 0 and time.monotonic() - self.last_used > self.settings.keep_alive:
            unload_all()
            return True
        return False

    # -- generation ---------------------------------------------------------------------------

    def params(self, model: ChatModel, **given: Any) -> GenerationParams:
        """Settings < the model's Modelfile PARAMETERs < the request's own values (``stop``: a list of strings,
        added to the chat template's and the Modelfile's stop sequences)."""
        base = GenerationParams(temperature=self.settings.temperature, max_tokens=self.settings.max_tokens)
        params = model.default_params(base)
        if given.get("stop") is not None:
            given["stop"] = tuple(given["stop"])
        return replace(params, **{k: v for k, v in given.items() if v is not None})

    def chat(self, name: str, messages: list[Message], **given: Any) -> Generation:
        model = self.chat_model(name)
        params = self.params(model, **given)
        if name.startswith(RAG_PREFIX):  # the one answering path, grounding included (DESIGN §11)
            question = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
            answer = self.outpost.ask(question, name.removeprefix(RAG_PREFIX), stream=True, chat=model, params=params)
            answerer = answer.model or model  # the routing policy may have chosen a remote (outpost.routing)
            used = answerer.check_prompt(answer.messages)
            pieces = _primed(self._tracked(iter(answer)))
            return Generation(name, pieces, used, params.max_tokens, answer.sources, answer.id, answer=answer)
        used = model.check_prompt(messages)
        pieces = _primed(self._tracked(model.stream(messages, params)))
        return Generation(name, pieces, used, params.max_tokens)

    def complete(self, name: str, prompt: str, **given: Any) -> Generation:
        if not prompt:  # llama.cpp asserts on a prompt of zero tokens (found by schemathesis: a 500)
            raise ConfigError("The prompt is empty: give the text to complete")
        model = self.chat_model(name)
        params = self.params(model, **given)
        return Generation(name, _primed(self._tracked(model.stream_raw(prompt, params))), 0, params.max_tokens)

    def _tracked(self, pieces: Iterator[str]) -> Iterator[str]:
        """Count requests in flight (so the idle timer never unloads a model mid-answer)."""
        with self._lock:
            self.in_flight += 1
        try:
            yield from pieces
        finally:
            with self._lock:
                self.in_flight -= 1
            self.touch()

    def vote(self, answer_id: str, helpful: bool | None, sources: dict[int, bool]) -> dict[str, object]:
        """Queue a vote on a RAG answer (both dialects' ``/feedback`` routes answer with this)."""
        self.outpost.vote(answer_id, helpful, sources)
        return {"queued": True, "answer_id": answer_id}

    # -- embeddings ---------------------------------------------------------------------------

    def embed(self, name: str, texts: list[str]) -> tuple[np.ndarray, int]:
        """Vectors from the embedding model; any other name is a 404 like an unknown chat model."""
        embedder = self.outpost.embedder()
        known = {self.settings.embed_model.lower(), embedder.identity.name.lower(), "all-minilm", "all-minilm-l6-v2"}
        if name.lower() not in known:
            raise ModelNotFoundError(f"No embedding model named {name!r}: use {self.settings.embed_model!r}")
        return embedder.embed(texts), sum(embedder.count_tokens(texts))


class _Primed(Iterator[str]):
    """Pieces whose generation has started, so a bad request fails before a streaming response has begun; ``close``
    ends that generation even if no piece was read (closing an unstarted wrapper generator would not)."""

    def __init__(self, pieces: Iterator[str]) -> None:
        self._pieces = pieces
        self._first = list(itertools.islice(pieces, 1))

    def __next__(self) -> str:
        return self._first.pop() if self._first else next(self._pieces)

    def close(self) -> None:
        self._first.clear()
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()


def _primed(pieces: Iterator[str]) -> _Primed:
    return _Primed(pieces)
