"""Test helpers for hybrid answering: a recording front for a real OpenAI-compatible server, a remote that
stays silent past any timeout, and documents with canary strings in every paragraph.

The "remote" in these tests is a real second Outpost API server (``create_app``, the bundled SmolLM2 through
llama.cpp) on 127.0.0.1: the only fake is that it stands in for a machine elsewhere (there is no internet
here). :class:`Recording` sits in front of it as ASGI middleware and keeps every request exactly as the
server received it (headers and whole body, read before the app sees a byte), so the canary checks are made
at the remote's side.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

CANARY_PRIVATE = "CANARY-PRIVATE-91f2e7"
CANARY_INTERNAL = "CANARY-INTERNAL-4c3b0a"
MARK_PUBLIC = "MARK-PUBLIC-77d1c9"

TOPICS = {
    "salaries.md": "Salary bands are reviewed every spring. The senior engineer band tops out at a fixed amount.",
    "travel.md": "Travel must be booked through the portal. Economy class is required for flights under six hours.",
    "security.md": "Passwords are reset at the service desk. Laptops must use full-disk encryption at all times.",
    "leave.md": "New hires get twenty vacation days. Unused days carry over until the end of March.",
}
QUESTIONS = [
    "What are the salary bands?",
    "How do I book travel?",
    "How do I reset my password?",
    "How many vacation days do new hires get?",
    "Which class is required for short flights?",
    "Must laptops be encrypted?",
]


def write_docs(folder: Path, marker: str) -> Path:
    """One small document per topic, the marker in every paragraph (so any retrieved chunk carries it)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in TOPICS.items():
        title = name.removesuffix(".md").title()
        (folder / name).write_text(f"# {title}\n\n{text} Reference {marker}.\n\n{marker}: {text}\n", "utf-8")
    return folder


class Recording:
    """ASGI middleware: records (headers, body) of every HTTP request before passing it on, unchanged."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self._lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        body = b"".join(chunks)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        with self._lock:
            self.requests.append((headers, body))
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def bodies(self) -> list[tuple[dict[str, str], str]]:
        """Every request that carried a body (the chat calls), decoded, in arrival order."""
        with self._lock:
            return [(h, b.decode("utf-8")) for h, b in self.requests if b]


class Silent:
    """A remote that takes the request, then says nothing for ``delay`` seconds (a slow or hung endpoint)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.received = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        self.received += 1
        await asyncio.sleep(self.delay)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"too late"})
