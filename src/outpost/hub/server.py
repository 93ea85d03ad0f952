"""The hub's HTTP API (FastAPI): it only translates requests into ``Hub`` and ``Tokens`` calls.

Every route but ``/health`` needs ``Authorization: Bearer <token>``. A collection outside the
token's scope answers 404 exactly like one that does not exist. Pack files are served by name from
a fixed list, inside a folder whose name is validated, with HTTP Range so downloads resume.
"""

import json
import logging
import re
import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel

from outpost import __version__
from outpost.errors import CollectionNotFoundError, ConfigError, OutpostError
from outpost.hub.home import HubHome
from outpost.hub.learning import store_feedback, train_and_publish, untrained_count
from outpost.hub.service import Hub
from outpost.hub.tokens import TokenInfo, Tokens
from outpost.models.registry import ModelEntry, Registry
from outpost.packs.format import PACK_FILES, pack_versions
from outpost.packs.signing import sign
from outpost.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger(__name__)
_PACK = re.compile(r"^(snapshot-[0-9]{1,12}|delta-[0-9]{1,12}-[0-9]{1,12})$")


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
        "url": f"/v1/collections/{name}/packs/{folder.name}",
    }


def _info_json(hub: Hub, name: str) -> dict[str, Any]:
    info = hub.info(name)
    return {
        "name": info.name,
        "version": info.version,
        "documents": info.documents,
        "chunks": info.chunks,
        "embedding": info.embedding.__dict__ if info.embedding else None,
        "chunker_id": info.chunker_id,
    }


def create_app(home: Path) -> FastAPI:
    """The hub app over the hub home inside ``home`` (an OUTPOST_HOME)."""
    hub_home = HubHome.at(home).require()
    hub = Hub(hub_home)
    tokens = Tokens(hub_home)
    app = FastAPI(title="Outpost hub", version=__version__)

    @app.exception_handler(OutpostError)
    async def outpost_error(_: Request, exc: OutpostError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.http_status)

    def token(request: Request) -> TokenInfo:
        header = request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        try:
            return tokens.authenticate(secret.strip() if scheme.lower() == "bearer" else None)
        except OutpostError:
            raise HTTPException(401, "A valid hub token is required", headers={"WWW-Authenticate": "Bearer"}) from None

    Token = Annotated[TokenInfo, Depends(token)]

    def readable(name: str, tok: TokenInfo) -> str:
        """The collection name if this token may read it and it exists; else the same 404 either way."""
        try:
            if tok.can("read", name) and name in hub.names():
                return name
        except ConfigError:
            pass
        raise _not_found(name)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/v1/hub")
    def hub_info(tok: Token) -> dict[str, Any]:
        return {"public_key": hub_home.public_key, "version": __version__, "token": tok.name}

    @app.get("/v1/collections")
    def collections(tok: Token) -> list[dict[str, Any]]:
        return [_info_json(hub, n) for n in hub.names() if tok.can("read", n)]

    @app.get("/v1/collections/{name}")
    def collection(name: str, tok: Token) -> dict[str, Any]:
        return _info_json(hub, readable(name, tok))

    @app.get("/v1/collections/{name}/sync")
    def sync_plan(name: str, tok: Token, have: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
        """What a client at version ``have`` should download: a delta if the hub has the chain, else a snapshot."""
        name = readable(name, tok)
        try:
            folder = hub.pack_for(name, have)
        except CollectionNotFoundError:
            raise _not_found(name) from None
        info = _info_json(hub, name)
        return {
            "collection": name,
            "version": info["version"],
            "pack": _pack_json(name, folder) if folder else None,
        }

    @app.get("/v1/collections/{name}/packs/{pack}/{file}")
    def pack_file(name: str, pack: str, file: str, tok: Token) -> FileResponse:
        name = readable(name, tok)
        if not _PACK.match(pack) or file not in PACK_FILES:
            raise HTTPException(404, "No such pack file")
        path = hub.public_packs_dir(name) / pack / file
        if not path.is_file():
            raise HTTPException(404, "No such pack file")
        return FileResponse(path, media_type="application/octet-stream")

    class FeedbackUpload(BaseModel):
        items: list[dict[str, Any]]

    training = threading.Lock()

    def maybe_train(name: str) -> None:
        """Train in the background once enough new votes arrived (setting ``hub_train_every``; 0 = off)."""
        every = Settings(home=home).hub_train_every
        if every <= 0 or untrained_count(hub_home, name) < every or not training.acquire(blocking=False):
            return

        def run() -> None:
            try:
                train_and_publish(hub, name)
            except OutpostError as exc:
                log.warning("automatic training of %s skipped: %s", name, exc)
            finally:
                training.release()

        threading.Thread(target=run, daemon=True).start()

    @app.post("/v1/collections/{name}/feedback")
    def feedback(name: str, upload: FeedbackUpload, tok: Token) -> dict[str, int]:
        """Votes from an outpost; keyed by their ids, so a retried upload is counted once."""
        name = readable(name, tok)
        for item in upload.items:
            if not isinstance(item.get("id"), str) or not isinstance(item.get("query_vector"), list):
                raise HTTPException(422, "Each feedback item needs an id and a query_vector")
        accepted = store_feedback(hub_home, name, tok.id, upload.items)
        maybe_train(name)
        return {"accepted": accepted, "duplicates": len(upload.items) - accepted}

    models = Registry(hub_home.root)

    def model_entry(name: str, tok: TokenInfo) -> ModelEntry:
        if tok.can("read", name, kind="model"):
            try:
                return models.get(name)
            except OutpostError:
                pass
        raise HTTPException(404, f"No model named {name!r}")

    @app.get("/v1/models")
    def list_models(tok: Token) -> list[dict[str, Any]]:
        return [
            {"name": e.name, "sha256": e.sha256, "size": e.size, "metadata": e.metadata}
            for e in models.list()
            if e.source != "bundled" and tok.can("read", e.name, kind="model")
        ]

    @app.get("/v1/models/{name}")
    def model(name: str, tok: Token) -> dict[str, Any]:
        """The model's manifest, signed by the hub key, so a client can verify what it downloads."""
        entry = model_entry(name, tok)
        manifest = json.dumps(
            {"name": entry.name, "sha256": entry.sha256, "size": entry.size, "metadata": entry.metadata}, sort_keys=True
        )
        signature = sign(hub_home.signing_key, manifest.encode("utf-8")).decode("ascii").strip()
        return {"manifest": manifest, "signature": signature}

    @app.get("/v1/models/{name}/blob")
    def model_blob(name: str, tok: Token) -> FileResponse:
        return FileResponse(model_entry(name, tok).path, media_type="application/octet-stream")

    return app
