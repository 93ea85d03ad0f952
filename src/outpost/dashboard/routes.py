"""The dashboard's routes: server-rendered pages under ``/ui`` (Ask also at ``/``) and a small JSON/SSE API.

Every route translates a request into the same core calls the CLI and the APIs make: answers come
from ``Outpost.ask`` on the API service's own ``Outpost`` (one answering path, one set of open
stores and loaded models), votes go through ``ApiService.vote`` into the queue ``outpost feedback``
shows, and ingest, sync and pull run the core functions with their progress callbacks as jobs.
State-changing routes take JSON (the API guard requires ``Content-Type: application/json``) and
a CSRF token (``security.check_csrf``).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import asdict
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from outpost import __version__
from outpost.app import Outpost
from outpost.dashboard import views
from outpost.dashboard.jobs import Job, JobManager, plain_error, sse
from outpost.dashboard.security import (
    CSRF_COOKIE,
    KEY_COOKIE,
    check_csrf,
    csrf_token,
    key_cookie_value,
    key_ok_value,
    set_cookie,
)
from outpost.errors import CollectionNotFoundError, ConfigError, ModelNotFoundError, OutpostError
from outpost.hubclient import HubClient
from outpost.hubs import HubConfig, load_hubs
from outpost.models.modelfile import parse_modelfile
from outpost.models.pull import pull
from outpost.models.registry import Registry
from outpost.settings import Settings
from outpost.streaming import GenerationStream
from outpost.sync import sync_hub

__all__ = ["Dashboard", "Host", "get_dashboard", "mount_static", "render_ask", "router"]

_HERE = files("outpost.dashboard")
templates = Jinja2Templates(directory=str(_HERE / "templates"))

PAGES = [("ask", "Ask", "/"), ("collections", "Collections", "/ui/collections"), ("sync", "Sync", "/ui/sync")]
PAGES += [("models", "Models", "/ui/models"), ("fit", "Fit", "/ui/fit"), ("settings", "Settings", "/ui/settings")]


class Host(Protocol):
    """What the dashboard needs from the app it is mounted in; ``api.service.ApiService`` is one.

    The dashboard answers through the same ``Outpost``, registry and vote queue as ``/v1`` and ``/api`` (one
    answering path), yet imports nothing of the API package: the API mounts the dashboard, not the reverse.
    """

    settings: Settings
    outpost: Outpost
    registry: Registry

    def touch(self) -> None:
        """Mark the models in use now (the idle reaper then leaves them loaded)."""

    def vote(self, answer_id: str, helpful: bool | None, sources: dict[int, bool]) -> dict[str, object]:
        """Queue a vote on an answer and/or its numbered sources."""


class AskRequest(BaseModel):
    question: str = ""
    collections: list[str] = Field(default_factory=list)
    model: str | None = None


class VoteRequest(BaseModel):
    answer_id: str
    helpful: bool | None = None
    sources: dict[int, bool] = Field(default_factory=dict)


class IngestRequest(BaseModel):
    path: str = ""
    collection: str = ""


class SyncRequest(BaseModel):
    hub: str


class PullRequest(BaseModel):
    source: str = ""
    name: str | None = None


class CreateRequest(BaseModel):
    name: str = ""
    modelfile: str = ""


class LoginRequest(BaseModel):
    key: str = ""


def mount_static(app: Any) -> None:
    app.mount("/ui/static", StaticFiles(directory=str(_HERE / "static")), name="dashboard-static")


def _page(request: Request, template: str, page: str, **context: Any) -> HTMLResponse:
    token = csrf_token(request)
    response = templates.TemplateResponse(
        request,
        template,
        {"page": page, "pages": PAGES, "csrf": token, "version": __version__, **context},
    )
    set_cookie(response, CSRF_COOKIE, token)
    response.headers["Cache-Control"] = "no-store"
    return response


def render_ask(request: Request, service: Host) -> HTMLResponse:
    """The Ask page (served at ``/`` for browsers and at ``/ui/ask``)."""
    names = [c.name for c in service.outpost.collections()]
    models = [e.name for e in service.registry.list()]
    return _page(request, "ask.html", "ask", collections=names, models=models, in_use=service.settings.llm_model)


def _bad(message: str, status: int = 400) -> HTTPException:
    return HTTPException(status, message)


class Dashboard:
    """The routes' shared state: the API's service, the job manager and each hub's last sync error."""

    def __init__(self, service: Host) -> None:
        self.service = service
        self.op = service.outpost
        self.settings = service.settings
        self.jobs = JobManager()
        self.last_errors: dict[str, str] = {}

    @property
    def registry(self) -> Registry:
        return self.service.registry

    # -- ask ----------------------------------------------------------------------------------

    def ask_events(self, question: str, collections: list[str], model: str | None) -> Generator[str, None, None]:
        """Answer from each chosen collection in turn, streaming; one collection's error never stops the rest."""
        for name in collections:
            yield sse("start", {"collection": name})
            try:
                if not views.collection_exists(self.settings, name):
                    raise CollectionNotFoundError(name)
                self.load_model(model)
                stream = self.op.ask(question, name, stream=True, model=model or None)
                yield sse(
                    "sources", {"collection": name, "id": stream.id, "sources": [asdict(s) for s in stream.sources]}
                )
                for piece in stream:
                    self.service.touch()  # keeps the idle reaper from unloading the model mid-answer
                    yield sse("token", {"collection": name, "text": piece})
                yield sse("done", {"collection": name, "answer": asdict(stream.result())})
            except Exception as exc:  # noqa: BLE001 - shown on the page; the stream and the server go on
                yield sse("error", {"collection": name, "message": plain_error(exc)})
        yield sse("end", {})

    def load_model(self, name: str | None) -> None:
        """Load (or find loaded) the chat model first, so a model that cannot load says so in those words."""
        try:
            self.op.chat_model(name or None)
        except OutpostError:
            raise
        except Exception as exc:  # llama.cpp raises ValueError and friends for an unreadable file
            shown = name or self.settings.llm_model
            raise ModelNotFoundError(
                f"Model {shown!r} failed to load ({exc}): pull it again, or pick another model"
            ) from exc

    # -- jobs ---------------------------------------------------------------------------------

    def ingest(self, job: Job, path: Path, collection: str) -> dict[str, Any]:
        report = self.op.ingest(path, collection=collection, progress=job.progress)
        return {
            "collection": report.collection,
            "version": report.version,
            "added": len(report.added),
            "updated": len(report.updated),
            "removed": len(report.removed),
            "unchanged": report.unchanged,
            "chunks_embedded": report.chunks_embedded,
            "chunks_reused": report.chunks_reused,
            "failures": [{"file": key, "reason": reason} for key, reason in report.failures],
        }

    def sync(self, job: Job, hub: HubConfig) -> dict[str, Any]:
        s = self.settings
        tracker = PackTracker(job, _expected_packs(hub, self.op))
        try:
            report = sync_hub(s.home, hub, None, False, s.exact_search_below, tracker, s.share_query_text)
        except Exception as exc:
            self.last_errors[hub.name] = plain_error(exc)
            raise
        failed = "; ".join(f"{name}: {why}" for name, why in report.failed.items())
        if failed:
            self.last_errors[hub.name] = failed
        else:
            self.last_errors.pop(hub.name, None)
        return {
            "updated": {name: list(v) for name, v in report.updated.items()},
            "current": report.current,
            "failed": report.failed,
            "unshared": report.unshared,
            "feedback_uploaded": report.feedback_uploaded,
        }

    def pull(self, job: Job, source: str, name: str | None) -> dict[str, Any]:
        entry = pull(self.settings.home, source, name, job.progress)
        return {"name": entry.name, "size": views.human_bytes(entry.size), "sha256": entry.sha256}


class PackTracker:
    """Turns sync's ``(stage, advance, total)`` calls into progress per pack.

    ``sync_hub`` reports bytes per pack, then ``apply`` 0/1 and 1/1, collection after collection,
    in the order the hub lists them. The collections that will fetch a pack are known beforehand
    from the hub's plans, so the n-th run of download events is labelled with the n-th of them (a
    collection that fails before its download would shift the labels; the result names each one).
    """

    def __init__(self, job: Job, expected: list[str]) -> None:
        self.job = job
        self.expected = expected
        self.index = -1
        self.open = False
        self.done = 0
        self.total = 0
        self.label = ""

    def __call__(self, stage: str, advance: int, total: int) -> None:
        if stage == "download":
            if not self.open:  # the first bytes of the next pack
                self.index, self.open, self.done = self.index + 1, True, 0
                self.label = self.expected[self.index] if self.index < len(self.expected) else f"{self.index + 1}"
            self.done += advance
            self.total = total
        applied = stage == "apply" and advance > 0
        if applied:
            self.open = False
        data = {"stage": "pack", "pack": self.label, "done": self.done, "total": self.total, "applied": applied}
        self.job.emit("progress", data)


def _expected_packs(hub: HubConfig, op: Any) -> list[str]:
    """The collections the coming sync will fetch a pack for, in order; empty if the hub cannot say."""
    local = {c.name: c.version for c in op.collections()}
    client = HubClient.for_hub(hub, timeout=10.0)
    expected: list[str] = []
    try:
        for c in client.get("/v1/collections"):
            plan = client.get(f"/v1/collections/{c['name']}/sync", have=local.get(c["name"], 0))
            if plan.get("pack"):
                expected.append(c["name"])
    except Exception:  # noqa: BLE001 - labels are a nicety; sync itself reports the real error
        return expected
    finally:
        client.close()
    return expected


def get_dashboard(request: Request) -> Dashboard:
    """The app's ``Dashboard`` (``outpost.dashboard.install`` keeps it on ``app.state.dashboard``)."""
    return request.app.state.dashboard  # type: ignore[no-any-return]


Board = Annotated[Dashboard, Depends(get_dashboard)]
router = APIRouter(include_in_schema=False)
csrf = [Depends(check_csrf)]


# -- pages ------------------------------------------------------------------------------


@router.get("/ui", response_class=HTMLResponse)
@router.get("/ui/ask", response_class=HTMLResponse)
def ask_page(request: Request, d: Board) -> HTMLResponse:
    return render_ask(request, d.service)


@router.get("/ui/collections", response_class=HTMLResponse)
def collections_page(request: Request, d: Board) -> HTMLResponse:
    return _page(request, "collections.html", "collections", rows=views.collection_rows(d.op))


@router.get("/ui/sync", response_class=HTMLResponse)
def sync_page(request: Request, d: Board) -> HTMLResponse:
    hubs = views.hub_rows(d.op, d.last_errors)
    return _page(request, "sync.html", "sync", hubs=hubs, share_text=d.settings.share_query_text)


@router.get("/ui/models", response_class=HTMLResponse)
def models_page(request: Request, d: Board) -> HTMLResponse:
    rows = views.model_rows(d.registry, d.settings.llm_model)
    return _page(request, "models.html", "models", rows=rows, in_use=d.settings.llm_model)


@router.get("/ui/fit", response_class=HTMLResponse)
def fit_page(request: Request, d: Board) -> HTMLResponse:
    return _page(request, "fit.html", "fit", fit=views.fit_report(d.op, d.registry))


@router.get("/ui/settings", response_class=HTMLResponse)
def settings_page(request: Request, d: Board) -> HTMLResponse:
    return _page(request, "settings.html", "settings", rows=views.settings_rows(d.settings))


@router.get("/ui/login", response_class=HTMLResponse)
def login_page(request: Request, d: Board, next: str = "/") -> HTMLResponse:
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    return _page(request, "login.html", "login", next=target, needed=bool(d.settings.api_key))


# -- answers and votes ------------------------------------------------------------------


@router.post("/ui/api/ask", dependencies=csrf)
def ask(body: AskRequest, d: Board) -> StreamingResponse:
    question = body.question.strip()
    if not question:
        raise _bad("Type a question first")
    if not body.collections:
        raise _bad("Choose at least one collection to answer from")
    events = d.ask_events(question, body.collections, body.model)
    # Closed however the response ends: an abandoned answer would otherwise keep its model's lock (reliability fix 15)
    return GenerationStream(
        events, events, media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


@router.post("/ui/api/vote", dependencies=csrf)
def vote(body: VoteRequest, d: Board) -> dict[str, object]:
    return d.service.vote(body.answer_id, body.helpful, body.sources)


# -- collections ------------------------------------------------------------------------


@router.post("/ui/api/ingest", dependencies=csrf)
def ingest(body: IngestRequest, d: Board) -> dict[str, Any]:
    path = Path(body.path.strip()).expanduser()
    name = body.collection.strip()
    if not body.path.strip() or not path.exists():
        raise _bad(f"No such file or folder: {body.path.strip() or '(empty)'}")
    if not name:
        raise _bad("Give the collection a name")
    job = d.jobs.running("ingest", name) or d.jobs.start("ingest", name, lambda j: d.ingest(j, path, name))
    return job.summary()


@router.post("/ui/api/collections/{name}/delete", dependencies=csrf)
def delete_collection(name: str, d: Board) -> dict[str, Any]:
    store = d.op.store(name)
    origin = store.get_meta("hub")
    if origin:
        raise _bad(f"{name!r} is synced from {origin}: it would come back on the next sync")
    if d.jobs.running("ingest", name):
        raise _bad(f"{name!r} is being ingested: wait for it to finish", 409)
    d.op.delete_collection(name)
    return {"deleted": name}


# -- sync -------------------------------------------------------------------------------


@router.post("/ui/api/sync", dependencies=csrf)
def sync(body: SyncRequest, d: Board) -> dict[str, Any]:
    hub = next((h for h in load_hubs(d.settings.home) if h.name == body.hub), None)
    if hub is None:
        raise _bad(f"No hub named {body.hub!r}: add one with `outpost sync --hub URL --token TOKEN`", 404)
    job = d.jobs.running("sync", hub.name) or d.jobs.start("sync", hub.name, lambda j: d.sync(j, hub))
    return job.summary()


# -- models -----------------------------------------------------------------------------


@router.post("/ui/api/models/pull", dependencies=csrf)
def pull_model(body: PullRequest, d: Board) -> dict[str, Any]:
    source = body.source.strip()
    if not source:
        raise _bad("Give a .gguf file path or hub://NAME")
    if not source.startswith("hub://") and not Path(source).expanduser().is_file():
        raise _bad(f"No such file: {source}")
    name = (body.name or "").strip() or None
    return d.jobs.start("pull", source, lambda j: d.pull(j, source, name)).summary()


@router.post("/ui/api/models/create", dependencies=csrf)
def create_model(body: CreateRequest, d: Board) -> dict[str, Any]:
    if not body.name.strip():
        raise _bad("Give the new model a name")
    modelfile = parse_modelfile(body.modelfile, source="the Modelfile")
    if modelfile.from_.lower().endswith(".gguf"):
        raise ConfigError("FROM must name an installed model here: pull the .gguf file first, then FROM its name")
    for adapter in modelfile.adapters:
        if not Path(adapter).is_file():
            raise ConfigError(f"ADAPTER {adapter} is not a file (llama.cpp loads LoRA adapters in GGUF form)")
    entry = d.registry.derive(body.name.strip(), d.registry.get(modelfile.from_), modelfile.to_text())
    return {"created": entry.name, "base": entry.base}


@router.post("/ui/api/models/{name}/delete", dependencies=csrf)
def delete_model(name: str, d: Board) -> dict[str, Any]:
    if name.lower() == d.settings.llm_model.lower():
        raise _bad(f"{name} is the model in use (llm_model): set another one first", 409)
    return {"deleted": d.registry.remove(name).name}


# -- jobs -------------------------------------------------------------------------------


@router.get("/ui/api/jobs/{job_id}/events")
def job_events(job_id: str, request: Request, d: Board) -> StreamingResponse:
    job = d.jobs.get(job_id)
    if job is None:
        raise _bad("That job is gone (the server restarted?): start it again", 404)
    start = int(request.headers.get("last-event-id") or 0)
    return StreamingResponse(
        d.jobs.stream(job, start), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


# -- login ------------------------------------------------------------------------------


@router.post("/ui/login", dependencies=csrf)
def login(body: LoginRequest, d: Board) -> Response:
    key = d.settings.api_key
    if not key:
        return RedirectResponse("/", status_code=303)
    if not key_ok_value(body.key, key):
        raise _bad("That is not the server's API key", 401)
    response = Response(status_code=204)
    set_cookie(response, KEY_COOKIE, key_cookie_value(key))
    return response
