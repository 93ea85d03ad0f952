"""OpenAI-compatible routes: /v1/models, /v1/chat/completions, /v1/completions, /v1/embeddings.

Shapes follow the OpenAI API reference so the official ``openai`` client works unchanged; streaming
is server-sent events ending with ``data: [DONE]``. Errors use ``{"error": {message, type, param, code}}``.
"""

import base64
import json
import time
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict

from outpost.api.deps import Service
from outpost.api.sampling import MaxTokens, MinP, StopList, StopText, TopK, stop_list
from outpost.api.service import Generation
from outpost.streaming import GenerationStream

__all__ = ["router"]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage]
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    seed: int | None = None
    stop: StopText | StopList | None = None
    top_k: TopK | None = None  # extra body (not in OpenAI's API; llama.cpp's server takes them too)
    min_p: MinP | None = None


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    prompt: str | list[str]
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: MaxTokens | None = 16
    seed: int | None = None
    stop: StopText | StopList | None = None
    top_k: TopK | None = None
    min_p: MinP | None = None


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(part.get("text", "") for part in content if part.get("type") == "text")
    return content or ""


def _messages(request: ChatRequest) -> list[dict[str, str]]:
    role = {"developer": "system"}
    return [{"role": role.get(m.role, m.role), "content": _text(m.content)} for m in request.messages]


def _usage(gen: Generation) -> dict[str, int]:
    return {
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": gen.completion_tokens,
        "total_tokens": gen.prompt_tokens + gen.completion_tokens,
    }


def _sources(gen: Generation) -> list[dict[str, Any]]:
    return [s.to_dict() for s in gen.sources]  # with each source's evidence sentences


class FeedbackRequest(BaseModel):
    answer_id: str
    helpful: bool | None = None
    sources: dict[int, bool] = {}


def _sse(events: Iterator[dict[str, Any]], gen: Generation) -> StreamingResponse:
    def body() -> Iterator[str]:
        for event in events:
            yield f"data: {json.dumps(event)}\n\n"
        yield "data: [DONE]\n\n"

    return GenerationStream(body(), gen, media_type="text/event-stream")


router = APIRouter(prefix="/v1")


@router.get("/models")
def models(service: Service) -> dict[str, Any]:
    now = int(time.time())
    return {
        "object": "list",
        "data": [{"id": n, "object": "model", "created": now, "owned_by": "outpost"} for n in service.model_names()],
    }


@router.post("/chat/completions", response_model=None)
def chat(request: ChatRequest, service: Service) -> dict[str, Any] | StreamingResponse:
    gen = service.chat(
        request.model,
        _messages(request),
        temperature=request.temperature,
        top_p=request.top_p,
        max_tokens=request.max_completion_tokens or request.max_tokens,
        seed=request.seed,
        stop=stop_list(request.stop),
        top_k=request.top_k,
        min_p=request.min_p,
    )
    created = int(time.time())
    base = {"id": f"chatcmpl-{gen.id}", "created": created, "model": request.model}
    if request.stream:

        def events() -> Iterator[dict[str, Any]]:
            chunk = {**base, "object": "chat.completion.chunk"}
            yield {
                **chunk,
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
            }
            for piece in gen:
                yield {**chunk, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            yield {
                **chunk,
                "choices": [{"index": 0, "delta": {}, "finish_reason": gen.finish_reason}],
                "usage": _usage(gen),
                "sources": _sources(gen),
                "answer_id": gen.answer_id or None,
                "grounding": gen.grounding(),
            }

        return _sse(events(), gen)
    text = "".join(gen)
    return {
        **base,
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": gen.finish_reason}
        ],
        "usage": _usage(gen),
        "sources": _sources(gen),
        "answer_id": gen.answer_id or None,
        "grounding": gen.grounding(),
    }


@router.post("/completions", response_model=None)
def completions(request: CompletionRequest, service: Service) -> dict[str, Any] | StreamingResponse:
    prompt = request.prompt if isinstance(request.prompt, str) else "".join(request.prompt)
    gen = service.complete(
        request.model,
        prompt,
        temperature=request.temperature,
        top_p=request.top_p,
        max_tokens=request.max_tokens,
        seed=request.seed,
        stop=stop_list(request.stop),
        top_k=request.top_k,
        min_p=request.min_p,
    )
    base = {
        "id": f"cmpl-{gen.id}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": request.model,
    }
    if request.stream:

        def events() -> Iterator[dict[str, Any]]:
            for piece in gen:
                yield {**base, "choices": [{"index": 0, "text": piece, "logprobs": None, "finish_reason": None}]}
            yield {
                **base,
                "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": gen.finish_reason}],
            }

        return _sse(events(), gen)
    text = "".join(gen)
    return {
        **base,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": gen.finish_reason}],
        "usage": _usage(gen),
    }


@router.post("/feedback")
def feedback(request: FeedbackRequest, service: Service) -> dict[str, Any]:
    """A vote on a RAG answer (by its ``answer_id``) and/or its numbered sources; `outpost sync` uploads it."""
    return service.vote(request.answer_id, request.helpful, request.sources)


@router.post("/embeddings")
def embeddings(request: EmbeddingRequest, service: Service) -> dict[str, Any]:
    texts = [request.input] if isinstance(request.input, str) else request.input
    vectors, tokens = service.embed(request.model, texts)

    def encode(v: Any) -> Any:
        return (
            base64.b64encode(v.astype("<f4").tobytes()).decode() if request.encoding_format == "base64" else v.tolist()
        )

    return {
        "object": "list",
        "model": request.model,
        "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
