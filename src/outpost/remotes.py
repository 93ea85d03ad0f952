"""Remote chat models: any OpenAI-compatible endpoint (vLLM, llama.cpp server, Ollama, a commercial API).

A remote is configured once (``outpost remote add``) and stored in ``$OUTPOST_HOME/remotes.json`` (0600).
Its API key is never stored: the config names an environment variable (``api_key_env``), read at call time,
so the key lives where the user's other secrets live and never in the home folder.

Backends are plugins (``outpost.plugins``) in the ``outpost.remotes`` entry-point group: a plugin's function
calls ``register(kind, factory)``, ``factory(config: RemoteConfig, timeout=) -> ChatModel``; the built-in
``openai`` kind registers the same way. Whether a remote is *used* is decided by ``outpost.routing``, never here.

    >>> remotes = RemoteStore(home)
    >>> remotes.add(RemoteConfig("gpu", "http://10.0.0.5:8000/v1", "llama-3.1-70b", "GPU_KEY", trusted=True))
    >>> model = load_remote(remotes.get("gpu"), timeout=20.0)
    >>> reply = model.open(messages, params)     # connects and waits for the first piece, within the timeout
    >>> text = "".join(reply)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import httpx

from outpost.errors import ConfigError, NotFoundError, RemoteError
from outpost.fsutil import atomic_write_text
from outpost.home import ensure_private_dir
from outpost.llm.base import ChatModel, GenerationParams, Message
from outpost.names import check_name, shown
from outpost.plugins import Group, factory_entries

__all__ = ["OpenAICompatModel", "RemoteConfig", "RemoteReply", "RemoteStore", "load_remote"]

ENTRY_POINT_GROUP = "outpost.remotes"
CHARS_PER_TOKEN = 3  # a remote's tokenizer is unknown here: over-count (English runs ~4 characters a token)


@dataclass
class RemoteConfig:
    """One remote endpoint. ``url`` is the OpenAI base URL (what the ``openai`` client calls ``base_url``)."""

    name: str
    url: str
    model: str
    api_key_env: str | None = None
    trusted: bool = False  # may receive ``internal`` collections' text
    price_in: float = 0.0  # USD per million prompt tokens
    price_out: float = 0.0  # USD per million completion tokens
    n_ctx: int = 32768
    kind: str = "openai"

    def __post_init__(self) -> None:
        check_name(self.name, "remote name")
        url = httpx.URL(self.url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(f"Remote URL {shown(self.url)} must be http(s)://HOST[:PORT]/PATH, e.g. .../v1")
        if not self.model:
            raise ConfigError("A remote needs --model (the name the endpoint serves)")
        if self.price_in < 0 or self.price_out < 0 or self.n_ctx < 256:
            raise ConfigError("Remote prices must be >= 0 and its context at least 256 tokens")

    @property
    def host(self) -> str:
        return httpx.URL(self.url).host

    def api_key(self) -> str | None:
        """The key from the environment, at call time; a named variable that is unset is an error."""
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise RemoteError(f"Remote {self.name!r} reads its API key from ${self.api_key_env}, which is not set")
        return key

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        """USD for one call at this remote's prices."""
        return (tokens_in * self.price_in + tokens_out * self.price_out) / 1e6


class RemoteStore:
    """``$OUTPOST_HOME/remotes.json``: the configured remotes (no keys), written 0600 by temp file + rename."""

    def __init__(self, home: Path) -> None:
        self.path = home / "remotes.json"

    def list(self) -> list[RemoteConfig]:
        if not self.path.is_file():
            return []
        try:
            raw = json.loads(self.path.read_text("utf-8"))
            known = {f.name for f in fields(RemoteConfig)}
            return [RemoteConfig(**{k: v for k, v in item.items() if k in known}) for item in raw]
        except (ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{self.path} is not a list of remotes ({exc}); fix or delete it") from exc

    def get(self, name: str) -> RemoteConfig:
        for remote in self.list():
            if remote.name == name:
                return remote
        raise NotFoundError(f"No remote named {name!r}: run `outpost remote list`, or `outpost remote add {name} ...`")

    def add(self, remote: RemoteConfig) -> None:
        """Add or replace ``remote`` (same name)."""
        self._write([r for r in self.list() if r.name != remote.name] + [remote])

    def remove(self, name: str) -> None:
        self.get(name)
        self._write([r for r in self.list() if r.name != name])

    def _write(self, remotes: Sequence[RemoteConfig]) -> None:  # (`list` here is the method above)
        ensure_private_dir(self.path.parent)
        atomic_write_text(self.path, json.dumps([asdict(r) for r in sorted(remotes, key=lambda r: r.name)], indent=2))


@dataclass
class RemoteReply:
    """A started remote reply: iterate for text pieces; ``usage`` holds the endpoint's counts once done."""

    pieces: Iterator[str]
    usage: dict[str, int] = field(default_factory=dict)

    def __iter__(self) -> Iterator[str]:
        return self.pieces


class OpenAICompatModel(ChatModel):
    """``POST {url}/chat/completions`` with streaming SSE (the built-in ``openai`` remote kind)."""

    def __init__(self, config: RemoteConfig, timeout: float = 20.0) -> None:
        self.config = config
        self.name = f"{config.name}/{config.model}"
        self.n_ctx = config.n_ctx
        self.timeout = timeout

    def prompt_tokens(self, messages: list[Message]) -> int:
        """An upper estimate: the endpoint's tokenizer is not here (it reports real counts in ``usage``)."""
        return sum(math.ceil(len(m.get("content", "")) / CHARS_PER_TOKEN) + 4 for m in messages) + 2

    def stream(
        self, messages: list[Message], params: GenerationParams, extra_stop: list[str] | None = None
    ) -> Iterator[str]:
        yield from self.open(messages, params, extra_stop)

    def open(
        self, messages: list[Message], params: GenerationParams, extra_stop: list[str] | None = None
    ) -> RemoteReply:
        """Send the request and wait (within the timeout) for its first piece, so an unreachable, failing or
        slow remote raises ``RemoteError`` here, before anything has been shown, and the caller can fall back."""
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        stop = [*params.stop, *(extra_stop or [])]
        if stop:  # top_k and min_p are not OpenAI parameters: a remote samples with its own
            body["stop"] = stop
        headers = {"Accept": "text/event-stream"}
        key = self.config.api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        reply = RemoteReply(iter(()))
        events = self._events(body, headers, reply)
        try:
            first = next(events)
        except StopIteration:
            return reply
        reply.pieces = _chain(first, events)
        return reply

    def _events(self, body: dict[str, Any], headers: dict[str, str], reply: RemoteReply) -> Iterator[str]:
        url = f"{self.config.url.rstrip('/')}/chat/completions"
        try:
            with (
                httpx.Client(timeout=self.timeout, follow_redirects=False, trust_env=False) as client,
                client.stream("POST", url, json=body, headers=headers) as response,
            ):
                if response.status_code != 200:
                    response.read()
                    raise RemoteError(
                        f"Remote {self.config.name!r} answered HTTP {response.status_code}: {response.text[:200]}"
                    )
                for data in _sse_data(response.iter_lines()):
                    piece = _piece(data, reply)
                    if piece:
                        yield piece
        except httpx.TimeoutException as exc:
            raise RemoteError(f"Remote {self.config.name!r} gave no answer within {self.timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise RemoteError(f"Remote {self.config.name!r} is unreachable ({type(exc).__name__}: {exc})") from exc


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def _sse_data(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            event = json.loads(payload)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event


def _piece(event: dict[str, Any], reply: RemoteReply) -> str:
    """The text in one streamed chunk; a chunk with ``usage`` (the last, with include_usage) fills it."""
    usage = event.get("usage")
    if isinstance(usage, dict):
        reply.usage = {k: int(v) for k, v in usage.items() if isinstance(v, int)}
    choices = event.get("choices") or []
    delta = choices[0].get("delta") if choices and isinstance(choices[0], dict) else None
    content = delta.get("content") if isinstance(delta, dict) else None
    return content if isinstance(content, str) else ""


def register_builtins(register: Callable[..., None]) -> None:
    """The built-in remote kind, registered like any plugin's (``outpost.remotes`` entry point ``openai``)."""
    register("openai", OpenAICompatModel)


REMOTES: Group[Callable[..., ChatModel]] = Group(ENTRY_POINT_GROUP, "remote kind", factory_entries, register_builtins)


def load_remote(config: RemoteConfig, timeout: float = 20.0) -> ChatModel:
    """The chat model for a configured remote (a ``RemoteError``-raising ``open`` for the built-in kind)."""
    factory = REMOTES.get(config.kind)
    if factory is None:
        known = ", ".join(sorted(REMOTES.table()))
        raise ConfigError(f"Remote {config.name!r} is of kind {config.kind!r}; known: {known}")
    return factory(config, timeout=timeout)
