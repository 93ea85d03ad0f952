"""The hub's HTTP API (FastAPI): it only translates requests into ``Hub`` and ``Tokens`` calls.

Every route but ``/health`` needs ``Authorization: Bearer <token>``, and the check happens in
:class:`TokenGate`, in front of routing and before a single byte of the request body is read: a
request without a valid token gets 401 whatever its size, and an authenticated one whose body is
larger than ``hub_feedback_max_bytes`` gets 413 (its ``Content-Length`` is checked first; a body
without one is read up to the cap and no further). The same gate covers ``/docs``, ``/redoc`` and
``/openapi.json``, which are off unless ``hub_api_docs`` is set.

A collection outside the token's scope answers 404 exactly like one that does not exist. Feedback
needs the ``feedback`` right: a token that may read a collection but not vote on it gets 403 (it
already knows the collection exists, so a clear refusal leaks nothing). Pack files are served by
name from a fixed list, inside a folder whose name is validated, with HTTP Range so downloads resume.

The routes are one module-level ``router``; what they share (the hub, its tokens and models, the settings)
is a :class:`HubContext` that ``create_app(settings)`` keeps on ``app.state.hub`` and routes receive
through ``Depends``, so two apps over two homes can live in one process (the tests run several).
"""

import json
import logging
import re
import threading
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outpost import __version__
from outpost.embed.encoders import ENCODER_FILES
from outpost.errors import AuthError, CollectionNotFoundError, ConfigError, OutpostError
from outpost.hub.home import HubHome
from outpost.hub.learning import check_feedback, store_feedback, train_and_publish, untrained_count
from outpost.hub.service import Hub
from outpost.hub.tokens import TokenInfo, Tokens
from outpost.labels import label_of
from outpost.models.registry import ModelEntry, Registry
from outpost.names import NAME_PATTERN
from outpost.packs.format import PACK_FILES, pack_versions
from outpost.packs.signing import sign
from outpost.settings import Settings

__all__ = ["MAX_DIMENSION", "MAX_QUERY_CHARS", "MAX_SHOWN", "HubContext", "TokenGate", "create_app", "router"]

log = logging.getLogger(__name__)
_PACK = re.compile(r"^(snapshot-[0-9]{1,12}|delta-[0-9]{1,12}-[0-9]{1,12})$")
PUBLIC_PATHS = frozenset({"/health"})
MAX_SHOWN = 64  # chunk ids one feedback item may show or vote on (an answer shows top_k sources)
MAX_DIMENSION = 8192  # longest query vector accepted before the collection's own dimension is checked
MAX_QUERY_CHARS = 8192  # query text, sent only when the outpost's user allows it

ChunkId = Annotated[str, Field(pattern=NAME_PATTERN)]
Vote = Literal[0, 1]


class FeedbackItemIn(BaseModel):
    """One vote as an outpost sends it (``FeedbackItem.payload``); extra fields are ignored, never stored."""

    model_config = ConfigDict(extra="ignore", strict=True)  # "1" is not a number, nor true a vector value

    id: Annotated[str, Field(pattern=NAME_PATTERN)]
    query_vector: Annotated[
        list[Annotated[float, Field(allow_inf_nan=False)]], Field(min_length=1, max_length=MAX_DIMENSION)
    ]
    query: Annotated[str | None, Field(max_length=MAX_QUERY_CHARS)] = None
    shown: Annotated[list[ChunkId], Field(max_length=MAX_SHOWN)] = []
    answer_vote: Vote | None = None
    source_votes: Annotated[dict[ChunkId, Vote], Field(max_length=MAX_SHOWN)] = {}

    @model_validator(mode="after")
    def _votes_on_shown(self) -> "FeedbackItemIn":
        """A vote on a source must be on one the answer showed."""
        stray = set(self.source_votes) - set(self.shown)
        if stray:
            raise ValueError(f"source_votes names chunks the item did not show: {sorted(stray)[:3]}")
        return self


class FeedbackRejection(BaseModel):
    index: int
    id: str
    reason: str


class FeedbackReceipt(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[FeedbackRejection] = []


def _not_found(name: str) -> HTTPException:
    return HTTPException(404, f"No collection named {name!r}")


def _pack_json(name: str, folder: Path) -> dict[str, Any]:
    base, version = pack_versions(folder.name) or (0, 0)
    return {
        "name": folder.name,
        "base_version": base,
        "version": version,
        "snapshot": base == 0,
        "files": {f: (folder / f).stat().st_size for f in PACK_FILES if (folder / f).is_file()},
    }  # names and sizes only, never a URL: the client builds URLs from names it validated (DESIGN §11)


def _label(hub: Hub, name: str) -> str:
    """The sensitivity label the hub ships collection ``name`` with (``outpost hub label``)."""
    store = hub.store(name)
    try:
        return label_of(store)
    finally:
        store.close()


def _info_json(hub: Hub, name: str) -> dict[str, Any]:
    info = hub.info(name)
    return {
        "name": info.name,
        "version": info.version,
        "documents": info.documents,
        "chunks": info.chunks,
        "embedding": info.embedding.__dict__ if info.embedding else None,
        "chunker_id": info.chunker_id,
        "label": _label(hub, name),
    }


def _bearer(header: str | None) -> str | None:
    scheme, _, secret = (header or "").partition(" ")
    return secret.strip() if scheme.lower() == "bearer" else None


class TokenGate:
    """ASGI middleware: authenticate, then bound the body, before the app (and routing) sees the request.

    FastAPI reads a route's JSON body before it resolves the route's dependencies, so a token check written
    as a dependency would come too late: an anonymous client could make the hub read and parse 100 MB. Here
    the token is looked up first (a read transaction, off the event loop); the request is refused without
    ever calling ``receive``. The authenticated token is left in ``scope["state"]["token"]`` for the routes.
    """

    def __init__(self, app: ASGIApp, tokens: Tokens, max_body: int) -> None:
        self.app = app
        self.tokens = tokens
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            info = await anyio.to_thread.run_sync(self.tokens.authenticate, _bearer(headers.get("authorization")))
        except AuthError:
            await _refuse(scope, receive, send, 401, "A valid hub token is required", {"WWW-Authenticate": "Bearer"})
            return
        scope.setdefault("state", {})["token"] = info
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _refuse(scope, receive, send, 413, f"Request bodies are limited to {self.max_body} bytes")
            return
        body = await _read_bounded(receive, self.max_body)
        if body is None:
            await _refuse(scope, receive, send, 413, f"Request bodies are limited to {self.max_body} bytes")
            return
        await self.app(scope, _replay(body, receive), send)


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, detail: str, headers: dict[str, str] | None = None
) -> None:
    response = JSONResponse({"detail": detail}, status_code=status, headers=headers)
    await response(scope, receive, send)


async def _read_bounded(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes ``limit`` (the rest is never read)."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(parts)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then defers to the real one (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class HubContext:
    """What the hub's routes share, built once per app by :func:`create_app` and kept on ``app.state.hub``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = HubHome.at(settings.home, settings.hub_db).require()
        self.hub = Hub(self.home)
        self.tokens = Tokens(self.home)
        self.models = Registry(self.home.root)
        self._training = threading.Lock()

    def visible(self, name: str, tok: TokenInfo, *rights: str) -> str:
        """The collection name if ``tok`` holds one of ``rights`` on it and it exists; else the same 404."""
        try:
            if any(tok.can(r, name) for r in rights) and name in self.hub.names():
                return name
        except ConfigError:
            pass
        raise _not_found(name)

    def readable(self, name: str, tok: TokenInfo) -> str:
        return self.visible(name, tok, "read")

    def model_entry(self, name: str, tok: TokenInfo) -> ModelEntry:
        """A hub model ``tok`` may read; any other name answers the same 404 as a missing one."""
        if tok.can("read", name, kind="model"):
            try:
                return self.models.get(name)
            except OutpostError:
                pass
        raise HTTPException(404, f"No model named {name!r}")

    def maybe_train(self, name: str) -> None:
        """Train in the background once enough new votes arrived (setting ``hub_train_every``; 0 = off)."""
        every = self.settings.hub_train_every
        if every <= 0 or untrained_count(self.home, name) < every or not self._training.acquire(blocking=False):
            return

        def run() -> None:
            try:
                train_and_publish(self.hub, name, token_share=self.settings.hub_feedback_token_share)
            except OutpostError as exc:
                log.warning("automatic training of %s skipped: %s", name, exc)
            finally:
                self._training.release()

        threading.Thread(target=run, daemon=True).start()


def _context(request: Request) -> HubContext:
    return request.app.state.hub  # type: ignore[no-any-return]


_bearer_scheme = HTTPBearer(auto_error=False, description="A hub token (`outpost hub token create`).")


def _token(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)]) -> TokenInfo:
    """The token :class:`TokenGate` authenticated (the dependency only names the scheme in the schema)."""
    return request.state.token  # type: ignore[no-any-return]


Context = Annotated[HubContext, Depends(_context)]
Token = Annotated[TokenInfo, Depends(_token)]

router = APIRouter()


@router.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get("/v1/hub")
def hub_info(ctx: Context, tok: Token) -> dict[str, Any]:
    return {"public_key": ctx.home.public_key, "version": __version__, "token": tok.name}


@router.get("/v1/collections")
def collections(ctx: Context, tok: Token) -> list[dict[str, Any]]:
    return [_info_json(ctx.hub, n) for n in ctx.hub.names() if tok.can("read", n)]


@router.get("/v1/collections/{name}")
def collection(name: str, ctx: Context, tok: Token) -> dict[str, Any]:
    return _info_json(ctx.hub, ctx.readable(name, tok))


@router.get("/v1/collections/{name}/sync")
def sync_plan(name: str, ctx: Context, tok: Token, have: Annotated[int, Query(ge=0, le=2**62)] = 0) -> dict[str, Any]:
    """What a client at version ``have`` should download: a delta if the hub has the chain, else a snapshot."""
    name = ctx.readable(name, tok)
    try:
        folder = ctx.hub.pack_for(name, have)
        label = _label(ctx.hub, name)  # laptops take it at every sync (issue 13)
    except CollectionNotFoundError:
        raise _not_found(name) from None
    pack = _pack_json(name, folder) if folder else None
    # The pack's own version (read with its rows), not a second read that a publish may have moved on.
    return {"collection": name, "version": pack["version"] if pack else have, "pack": pack, "label": label}


@router.get("/v1/collections/{name}/packs/{pack}/{file}")
def pack_file(name: str, pack: str, file: str, ctx: Context, tok: Token) -> FileResponse:
    name = ctx.readable(name, tok)
    if not _PACK.match(pack) or file not in PACK_FILES:
        raise HTTPException(404, "No such pack file")
    path = ctx.hub.public_packs_dir(name) / pack / file
    if not path.is_file():
        raise HTTPException(404, "No such pack file")
    return FileResponse(path, media_type="application/octet-stream")


@router.get("/v1/collections/{name}/encoders/{sha}/{file}")
def encoder_file(name: str, sha: str, file: str, ctx: Context, tok: Token) -> FileResponse:
    """A file of the query encoder the collection's identity names (its pack manifests sign its hash); any other
    sha, even one another collection uses, is the same 404. Served with HTTP Range, so downloads resume."""
    name = ctx.readable(name, tok)
    found = ctx.hub.encoder(ctx.hub.info(name).embedding)
    if found is None or found[1].sha256 != sha or file not in ENCODER_FILES or not (found[0] / file).is_file():
        raise HTTPException(404, "No such encoder file")
    return FileResponse(found[0] / file, media_type="application/octet-stream")


class FeedbackUpload(BaseModel):
    """One upload; how many items it may hold is the hub's setting, checked by :func:`_check_count`."""

    items: list[FeedbackItemIn]


def _check_count(upload: FeedbackUpload, limit: int) -> None:
    """Refuse an upload of more than ``hub_feedback_max_items`` items whole, as pydantic would (422)."""
    if len(upload.items) > limit:
        message = f"List should have at most {limit} items after validation, not {len(upload.items)}"
        raise RequestValidationError([{"loc": ("body", "items"), "msg": message, "type": "too_long"}])


_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid token"},
    403: {"description": "The token may read the collection but not upload feedback to it"},
    404: {"description": "No such collection, or not in the token's scope"},
    413: {"description": "Body larger than `hub_feedback_max_bytes`"},
}


@router.post("/v1/collections/{name}/feedback", responses=_REFUSALS)
def feedback(name: str, upload: FeedbackUpload, ctx: Context, tok: Token) -> FeedbackReceipt:
    """Votes from an outpost (needs the ``feedback`` right); keyed by their ids, so a retried upload is
    counted once. Items that do not fit the collection are listed under ``rejected`` and not stored."""
    _check_count(upload, ctx.settings.hub_feedback_max_items)
    name = ctx.visible(name, tok, "read", "feedback")
    if not tok.can("feedback", name):
        raise HTTPException(
            403, f"This token may not upload feedback to {name!r}: the hub must grant it `--feedback {name}`"
        )
    items = [item.model_dump() for item in upload.items]
    store = ctx.hub.store(name)
    try:
        good, rejected = check_feedback(store, items)
    finally:
        store.close()
    accepted = store_feedback(ctx.home, name, tok.id, good)
    ctx.maybe_train(name)
    return FeedbackReceipt(
        accepted=accepted,
        duplicates=len(good) - accepted,
        rejected=[FeedbackRejection(index=r.index, id=r.id, reason=r.reason) for r in rejected],
    )


@router.get("/v1/models")
def list_models(ctx: Context, tok: Token) -> list[dict[str, Any]]:
    return [
        {"name": e.name, "sha256": e.sha256, "size": e.size, "metadata": e.metadata}
        for e in ctx.models.list()
        if e.source != "bundled" and tok.can("read", e.name, kind="model")
    ]


@router.get("/v1/models/{name}")
def model(name: str, ctx: Context, tok: Token) -> dict[str, Any]:
    """The model's manifest, signed by the hub key, so a client can verify what it downloads."""
    entry = ctx.model_entry(name, tok)
    manifest = json.dumps(
        {"name": entry.name, "sha256": entry.sha256, "size": entry.size, "metadata": entry.metadata}, sort_keys=True
    )
    signature = sign(ctx.home.signing_key, manifest.encode("utf-8")).decode("ascii").strip()
    return {"manifest": manifest, "signature": signature}


@router.get("/v1/models/{name}/blob")
def model_blob(name: str, ctx: Context, tok: Token) -> FileResponse:
    return FileResponse(ctx.model_entry(name, tok).path, media_type="application/octet-stream")


async def _outpost_error(_: Request, exc: OutpostError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=exc.http_status)


async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's own handler echoes each bad input back: a NaN then crashes the JSON encoder (500), and an
    8,000-value vector comes back whole. Say where and what, never echo."""
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
    return JSONResponse({"detail": errors[:20]}, status_code=422)


def create_app(settings: Settings) -> FastAPI:
    """The hub app over the hub home inside ``settings.home`` (an OUTPOST_HOME); refuses one not initialised."""
    context = HubContext(settings)
    docs = settings.hub_api_docs
    app = FastAPI(
        title="Outpost hub",
        version=__version__,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.hub = context
    app.add_middleware(TokenGate, tokens=context.tokens, max_body=settings.hub_feedback_max_bytes)
    app.exception_handler(OutpostError)(_outpost_error)
    app.exception_handler(RequestValidationError)(_invalid_request)
    app.include_router(router)
    return app
