"""Sampling fields both API dialects accept, typed and bounded once.

OpenAI's ``stop`` is a string or a list, Ollama's ``options.stop`` a list; either adds to the stop sequences
the chat template and the Modelfile bring. ``top_k`` and ``min_p`` are Ollama options; OpenAI clients send them
in the request's extra body (``extra_body={"top_k": 20}``), as llama.cpp's own server accepts them. An empty
stop string would end every answer before its first token, so it is refused rather than ignored.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

__all__ = ["MaxTokens", "MinP", "NumPredict", "StopList", "StopText", "TopK", "stop_list"]

StopText = Annotated[str, Field(min_length=1)]
StopList = Annotated[list[StopText], Field(max_length=16)]
TopK = Annotated[int, Field(ge=0, le=2**31 - 1, description="keep the k likeliest tokens (0: no limit)")]  # C int32
MinP = Annotated[float, Field(ge=0.0, le=1.0, description="drop tokens below min_p x the likeliest one's probability")]
# OpenAI refuses a max_tokens below 1; llama.cpp would read one as "until the context is full" (found by schemathesis:
# max_tokens -1 on a RAG completion ran 23 s and reported finish_reason "length" for a reply that had stopped)
MaxTokens = Annotated[int, Field(ge=1, le=2**31 - 1, description="most tokens to generate")]
# Ollama's num_predict -1 ("no limit") and -2 ("fill the context"), and 0, mean the model's own limit here: the
# Modelfile's num_predict is read the same way (models/modelfile.py), and no request generates past that limit
NumPredict = Annotated[
    int, Field(ge=-2, le=2**31 - 1, description="most tokens to generate; -2 to 0: the model's own limit")
]


def stop_list(stop: str | list[str] | None) -> list[str] | None:
    """OpenAI's ``stop``, a string or a list, as a list."""
    return [stop] if isinstance(stop, str) else stop
