"""Sampling fields both API dialects accept, typed and bounded once.

OpenAI's ``stop`` is a string or a list, Ollama's ``options.stop`` a list; either adds to the stop sequences
the chat template and the Modelfile bring. ``top_k`` and ``min_p`` are Ollama options; OpenAI clients send them
in the request's extra body (``extra_body={"top_k": 20}``), as llama.cpp's own server accepts them. An empty
stop string would end every answer before its first token, so it is refused rather than ignored.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

__all__ = ["MinP", "StopList", "StopText", "TopK", "stop_list"]

StopText = Annotated[str, Field(min_length=1)]
StopList = Annotated[list[StopText], Field(max_length=16)]
TopK = Annotated[int, Field(ge=0, le=2**31 - 1, description="keep the k likeliest tokens (0: no limit)")]  # C int32
MinP = Annotated[float, Field(ge=0.0, le=1.0, description="drop tokens below min_p x the likeliest one's probability")]


def stop_list(stop: str | list[str] | None) -> list[str] | None:
    """OpenAI's ``stop``, a string or a list, as a list."""
    return [stop] if isinstance(stop, str) else stop
