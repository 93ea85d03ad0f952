"""Streamed answers (SSE, NDJSON) that end their generation however the response ends.

Shared by the local API's two dialects and the dashboard's Ask (both stream answers that hold a model's lock).

When a client goes away mid-answer, Starlette cancels the response but never closes the iterator it was reading
in a worker thread. The generation behind it holds its model's lock while it runs (requests queue per model), so it
stayed suspended, lock held, until Python's cyclic garbage collector happened to find it, and every later request
to that model queued behind it: the 16-client load proof stalled (docs/reliability.md, fix 15).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

__all__ = ["Closeable", "GenerationStream"]


class Closeable(Protocol):
    def close(self) -> None: ...


class GenerationStream(StreamingResponse):
    """``content`` streamed from ``generation``, which is closed when the response ends: done, failed or cut off.

    ``generation`` is anything with ``close()``: the API's ``Generation``, or the dashboard's event generator itself
    (closing a generator unwinds the answer streams it iterates, which close theirs in turn).
    """

    def __init__(
        self,
        content: Iterator[str],
        generation: Closeable,
        media_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self.generation = generation

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Shielded: a cancelled response still closes. In a worker thread, after the one that read the last
            # piece has returned (Starlette waits for it), so the generator is never closed while it runs.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.generation.close)
