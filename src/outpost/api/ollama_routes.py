"""Ollama-compatible routes: /api/version, /api/tags, /api/show, /api/ps, /api/chat, /api/generate, /api/embed.

Shapes follow Ollama's API docs so the official ``ollama`` client works unchanged; streaming (the
default there) is newline-delimited JSON. Errors are ``{"error": "message"}``.
"""

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import PurePath
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict

from outpost import __version__
from outpost.api.deps import Service
from outpost.api.openai_routes import FeedbackRequest
from outpost.api.sampling import MinP, NumPredict, StopList, TopK
from outpost.api.service import RAG_PREFIX, Generation
from outpost.models.load import loaded_models
from outpost.models.modelfile import parse_modelfile
from outpost.models.registry import ModelEntry
from outpost.streaming import GenerationStream

__all__ = ["router"]


class Options(BaseModel):
    model_config = ConfigDict(extra="allow")
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    num_predict: NumPredict | None = None
    stop: StopList | None = None
    top_k: TopK | None = None
    min_p: MinP | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[dict[str, Any]] = []
    stream: bool = True
    options: Options | None = None
    keep_alive: str | float | None = None


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    prompt: str = ""
    system: str | None = None
    raw: bool = False
    stream: bool = True
    options: Options | None = None


class ShowRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    name: str | None = None


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    input: str | list[str] = ""
    prompt: str | None = None  # the older /api/embeddings form


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _params(options: Options | None) -> dict[str, Any]:
    o = options or Options()
    return {
        "temperature": o.temperature,
        "top_p": o.top_p,
        "seed": o.seed,
        "max_tokens": o.num_predict if o.num_predict is not None and o.num_predict > 0 else None,
        "stop": o.stop,
        "top_k": o.top_k,
        "min_p": o.min_p,
    }


def _details(entry: ModelEntry) -> dict[str, Any]:
    meta = entry.metadata
    params = meta.get("parameters") or 0
    size = f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.0f}M"
    return {
        "parent_model": entry.base or "",
        "format": "gguf",
        "family": entry.family,
        "families": [entry.family],
        "parameter_size": size,
        "quantization_level": meta.get("quantization", ""),
    }


def _tag(entry: ModelEntry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "model": entry.name,
        "modified_at": entry.created_at or _now(),
        "size": entry.size,
        "digest": entry.sha256,
        "details": _details(entry),
    }


def _public_modelfile(entry: ModelEntry) -> str:
    """The Modelfile as clients may see it: FROM names the base model and ADAPTER the file's name, no local paths.

    (Ollama itself shows ``FROM /home/…/blobs/sha256-…``; a page that reached the port would learn the user name.)
    """
    if not entry.modelfile:
        return f"FROM {entry.name}\n"
    modelfile = parse_modelfile(entry.modelfile)
    adapters = [PurePath(a).name for a in modelfile.adapters]
    return replace(modelfile, from_=entry.base or entry.name, adapters=adapters).to_text()


def _final(gen: Generation) -> dict[str, Any]:
    elapsed = int((time.perf_counter() - gen.started) * 1e9)
    return {
        "done": True,
        "done_reason": gen.finish_reason,
        "total_duration": elapsed,
        "load_duration": 0,
        "prompt_eval_count": gen.prompt_tokens,
        "eval_count": gen.completion_tokens,
        "eval_duration": elapsed,
        "sources": [s.to_dict() for s in gen.sources],  # with each source's evidence sentences
        "answer_id": gen.answer_id or None,
        "grounding": gen.grounding(),
    }


def _ndjson(events: Iterator[dict[str, Any]], gen: Generation) -> StreamingResponse:
    return GenerationStream((json.dumps(e) + "\n" for e in events), gen, media_type="application/x-ndjson")


router = APIRouter(prefix="/api")


@router.get("/version")
def version() -> dict[str, str]:
    return {"version": __version__}


@router.get("/tags")
def tags(service: Service) -> dict[str, Any]:
    return {"models": [_tag(e) for e in service.registry.list()]}


@router.get("/ps")
def ps() -> dict[str, Any]:
    return {"models": [{"name": m.name, "model": m.name, "size": 0} for m in loaded_models()]}


@router.post("/show")
def show(request: ShowRequest, service: Service) -> dict[str, Any]:
    entry = service.registry.get(request.model or request.name or "")
    meta = dict(entry.metadata)
    template = meta.pop("chat_template", "")
    return {
        "modelfile": _public_modelfile(entry),
        "parameters": "",
        "template": template,
        "details": _details(entry),
        "model_info": meta,
        "license": meta.get("license", ""),
        "modified_at": entry.created_at,
        "capabilities": ["completion"],
    }


@router.post("/chat", response_model=None)
def chat(request: ChatRequest, service: Service) -> dict[str, Any] | StreamingResponse:
    messages = [{"role": m.get("role", "user"), "content": m.get("content", "")} for m in request.messages]
    gen = service.chat(request.model, messages, **_params(request.options))
    head = {"model": request.model}
    if request.stream:

        def events() -> Iterator[dict[str, Any]]:
            for piece in gen:
                yield {
                    **head,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": piece},
                    "done": False,
                }
            yield {**head, "created_at": _now(), "message": {"role": "assistant", "content": ""}, **_final(gen)}

        return _ndjson(events(), gen)
    text = "".join(gen)
    return {**head, "created_at": _now(), "message": {"role": "assistant", "content": text}, **_final(gen)}


@router.post("/generate", response_model=None)
def generate(request: GenerateRequest, service: Service) -> dict[str, Any] | StreamingResponse:
    if not request.prompt:  # Ollama: an empty prompt just loads the model
        service.chat_model(request.model)
        return {"model": request.model, "created_at": _now(), "response": "", "done": True, "done_reason": "load"}
    if request.raw and not request.model.startswith(RAG_PREFIX):
        gen = service.complete(request.model, request.prompt, **_params(request.options))
    else:
        messages = ([{"role": "system", "content": request.system}] if request.system else []) + [
            {"role": "user", "content": request.prompt}
        ]
        gen = service.chat(request.model, messages, **_params(request.options))
    head = {"model": request.model}
    if request.stream:

        def events() -> Iterator[dict[str, Any]]:
            for piece in gen:
                yield {**head, "created_at": _now(), "response": piece, "done": False}
            yield {**head, "created_at": _now(), "response": "", **_final(gen)}

        return _ndjson(events(), gen)
    text = "".join(gen)
    return {**head, "created_at": _now(), "response": text, **_final(gen)}


@router.post("/feedback")
def feedback(request: FeedbackRequest, service: Service) -> dict[str, Any]:
    return service.vote(request.answer_id, request.helpful, request.sources)


@router.post("/embed")
def embed(request: EmbedRequest, service: Service) -> dict[str, Any]:
    texts = [request.input] if isinstance(request.input, str) else request.input
    vectors, tokens = service.embed(request.model, texts)
    return {"model": request.model, "embeddings": vectors.tolist(), "prompt_eval_count": tokens}


@router.post("/embeddings")
def embeddings(request: EmbedRequest, service: Service) -> dict[str, Any]:
    vectors, _ = service.embed(request.model, [request.prompt or ""])
    return {"embedding": vectors[0].tolist()}
