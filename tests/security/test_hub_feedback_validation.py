"""Feedback uploads, played by an attacker: malformed items, items that do not fit the collection, too many
items, oversized bodies, and bodies sent without a token.

Every malformed request is refused whole with 422 and stores nothing; items that are well-formed but do not
fit the collection (wrong dimension, unknown chunks) are listed under ``rejected`` and not stored. The body
is never read before the token is checked: the app is wrapped in a meter that counts the body bytes it
pulls, and raw sockets announce bodies they never send.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hubkit import ServerThread
from outpost.hub.server import MAX_DIMENSION, MAX_QUERY_CHARS, MAX_SHOWN, create_app
from outpost.hub.tokens import Tokens
from outpost.settings import Settings
from security.hubworld import DIM, item, synthetic_hub

MAX_ITEMS = 5
MAX_BYTES = 64 * 1024


class BodyMeter:
    """Outermost ASGI wrapper: counts the request-body bytes the hub app pulls through ``receive``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.pulled = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def metered() -> Message:
            message = await receive()
            self.pulled += len(message.get("body", b""))
            return message

        await self.app(scope, metered, send)


@dataclass
class Hub:
    url: str
    port: int
    token: str
    meter: BodyMeter
    db: Path

    def post(self, body: Any = None, content: bytes | None = None, name: str = "docs") -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        url = f"{self.url}/v1/collections/{name}/feedback"
        return httpx.post(url, headers=headers, json=body, content=content, timeout=10)

    def stored(self) -> int:
        with sqlite3.connect(self.db) as db:
            return int(db.execute("SELECT count(*) FROM feedback").fetchone()[0])


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    home = tmp_path_factory.mktemp("hub-home")
    service = synthetic_hub(home)
    token = Tokens(service.home).create("laptop", ["docs"], feedback=["docs"])[0]
    settings = Settings(
        home=home, hub_feedback_max_items=MAX_ITEMS, hub_feedback_max_bytes=MAX_BYTES, hub_train_every=0
    )
    meter = BodyMeter(create_app(settings))
    with ServerThread(meter) as server:
        yield Hub(server.url, server.port, token, meter, service.home.root / "hub.sqlite")


def _vector_text(value: str) -> bytes:
    """A body whose first vector value is ``value`` verbatim (JSON has no NaN; Python's parser accepts it)."""
    body = json.dumps({"items": [item()]})
    return body.replace("[0.5,", f"[{value},", 1).encode()


MALFORMED: dict[str, Any] = {
    "NaN in the vector": _vector_text("NaN"),
    "Infinity in the vector": _vector_text("Infinity"),
    "-Infinity in the vector": _vector_text("-Infinity"),
    "a string in the vector": {"items": [item(query_vector=["0.5"] * DIM)]},
    "a boolean in the vector": {"items": [item(query_vector=[True] * DIM)]},
    "an empty vector": {"items": [item(query_vector=[])]},
    "a vector longer than any model's": {"items": [item(query_vector=[0.1] * (MAX_DIMENSION + 1))]},
    "no vector": {"items": [{k: v for k, v in item().items() if k != "query_vector"}]},
    "no id": {"items": [{k: v for k, v in item().items() if k != "id"}]},
    "an id that is a path": {"items": [item(id="../../etc/passwd")]},
    "an empty id": {"items": [item(id="")]},
    "a 129-character id": {"items": [item(id="a" * 129)]},
    "a chunk id that is a path": {"items": [item(shown=["../docs-c0"], source_votes={})]},
    "too many shown chunks": {"items": [item(chunks=tuple(range(MAX_SHOWN + 1)))]},
    "a vote on a chunk not shown": {"items": [item(source_votes={"docs-c5": 1})]},
    "an answer vote of 2": {"items": [item(answer_vote=2)]},
    "an answer vote of -1": {"items": [item(answer_vote=-1)]},
    "a source vote of 5": {"items": [item(source_votes={"docs-c0": 5})]},
    "a vote as a string": {"items": [item(answer_vote="1")]},
    "a query longer than allowed": {"items": [item(query="x" * (MAX_QUERY_CHARS + 1))]},
    "items not a list": {"items": item()},
    "no items at all": {"votes": []},
    "one item too many": {"items": [item() for _ in range(MAX_ITEMS + 1)]},
    "not JSON": b"{'items': [",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_upload_is_refused_whole_and_stores_nothing(hub: Hub, case: str) -> None:
    before = hub.stored()
    body = MALFORMED[case]
    good = item()  # a valid item in the same request must not slip in either
    if isinstance(body, dict) and isinstance(body.get("items"), list) and len(body["items"]) < MAX_ITEMS:
        body = {"items": [good, *body["items"]]}
    answer = hub.post(content=body) if isinstance(body, bytes) else hub.post(body)
    assert answer.status_code == 422, answer.text
    assert "detail" in answer.json()
    assert hub.stored() == before


MISFITS = {
    "a vector of the wrong dimension": (item(dim=DIM + 1), "the collection's embedding has 8"),
    "a vector of a far larger dimension": (item(dim=384), "query_vector has 384 values"),
    "a chunk id that does not exist": (item(chunks=(0, 999)), "not in the collection"),
    "a chunk of another collection": (item(shown=["secret-c0"], source_votes={}), "'secret-c0'"),
    "a vote on a chunk that does not exist": (
        item(shown=["docs-c0", "docs-c404"], source_votes={"docs-c404": 1}),
        "not in the collection",
    ),
}


@pytest.mark.parametrize("case", sorted(MISFITS))
def test_items_that_do_not_fit_the_collection_are_rejected_not_stored(hub: Hub, case: str) -> None:
    misfit, reason = MISFITS[case]
    good = item()
    before = hub.stored()
    answer = hub.post({"items": [good, misfit]})
    assert answer.status_code == 200, answer.text
    receipt = answer.json()
    assert receipt["accepted"] == 1 and receipt["duplicates"] == 0
    assert [(r["index"], r["id"]) for r in receipt["rejected"]] == [(1, misfit["id"])]
    assert reason in receipt["rejected"][0]["reason"]
    assert hub.stored() == before + 1
    with sqlite3.connect(hub.db) as db:
        assert db.execute("SELECT count(*) FROM feedback WHERE id = ?", (misfit["id"],)).fetchone()[0] == 0


def test_a_full_upload_of_the_largest_allowed_size_is_taken(hub: Hub) -> None:
    items = [item(chunks=tuple(range(4))) for _ in range(MAX_ITEMS)]
    answer = hub.post({"items": items})
    assert answer.status_code == 200 and answer.json()["accepted"] == MAX_ITEMS
    assert hub.post({"items": items}).json() == {"accepted": 0, "duplicates": MAX_ITEMS, "rejected": []}


def raw_exchange(port: int, head: str, body: bytes = b"", chunks: Iterator[bytes] | None = None) -> str:
    """Send a request head (and maybe part of a body) over a plain socket; return the response's first line
    and body. The body the head announces is never sent in full: the server must answer without it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        for chunk in chunks or ():
            try:
                sock.sendall(chunk)
            except OSError:  # the server closed the connection after answering: what we want
                break
        received = b""
        while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            received += data
    head_text, _, payload = received.decode("latin-1").partition("\r\n\r\n")
    return head_text.split("\r\n")[0] + " " + payload


def _head(length: str | None, token: str | None, extra: str = "") -> str:
    lines = ["POST /v1/collections/docs/feedback HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"Content-Length: {length}"] if length is not None else []
    lines += [f"Authorization: Bearer {token}"] if token else []
    lines += [extra] if extra else []
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("token", [None, "opk_not-a-real-token"], ids=["no token", "wrong token"])
def test_a_100_mb_body_without_a_valid_token_gets_401_unread(hub: Hub, token: str | None) -> None:
    hub.meter.pulled = 0
    reply = raw_exchange(hub.port, _head(str(100 * 2**20), token), b'{"items": [')  # 11 bytes of 100 MB
    assert reply.startswith("HTTP/1.1 401"), reply
    assert '"A valid hub token is required"' in reply
    assert hub.meter.pulled == 0  # the app never pulled a byte of the body


def test_an_announced_body_over_the_cap_gets_413_unread(hub: Hub) -> None:
    hub.meter.pulled = 0
    reply = raw_exchange(hub.port, _head(str(100 * 2**20), hub.token), b'{"items": [')
    assert reply.startswith("HTTP/1.1 413"), reply
    assert str(MAX_BYTES) in reply
    assert hub.meter.pulled == 0


def test_a_bad_content_length_gets_413_unread(hub: Hub) -> None:
    hub.meter.pulled = 0
    reply = raw_exchange(hub.port, _head("-5", hub.token), b"")
    assert reply.startswith(("HTTP/1.1 400", "HTTP/1.1 413")), reply  # uvicorn may refuse it first
    assert hub.meter.pulled == 0


def test_a_chunked_body_is_read_up_to_the_cap_and_no_further(hub: Hub) -> None:
    hub.meter.pulled = 0
    piece = b"x" * 16384
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    reply = raw_exchange(hub.port, _head(None, hub.token, "Transfer-Encoding: chunked"), chunks=iter([chunk] * 256))
    assert reply.startswith("HTTP/1.1 413"), reply
    # stopped at the cap, not at the 4 MB sent; one message may carry a whole socket read (asyncio: 256 KiB)
    assert MAX_BYTES < hub.meter.pulled <= MAX_BYTES + 256 * 1024


def test_a_body_on_a_get_counts_against_the_same_cap(hub: Hub) -> None:
    head = _head(str(100 * 2**20), hub.token).replace("POST /v1/collections/docs/feedback", "GET /v1/collections")
    assert raw_exchange(hub.port, head, b"{").startswith("HTTP/1.1 413")
