"""`outpost serve`: the local API (OpenAI /v1, Ollama /api) and the dashboard, as one ASGI app."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from outpost.app import Outpost
from outpost.cli.console import err, guarded
from outpost.cli.options import setting_option

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve_cmd(
    ctx: typer.Context,
    host: Annotated[
        Optional[str],
        setting_option("serve_host", help="Address to bind; its name is then an allowed Host"),
    ] = None,
    port: Annotated[int, typer.Option(help="TCP port (11434 is Ollama's).")] = 11434,
    api_key: Annotated[Optional[str], setting_option("api_key", envvar="OUTPOST_API_KEY")] = None,
    keep_alive: Annotated[Optional[float], setting_option("keep_alive")] = None,
) -> None:
    """Serve the OpenAI- and Ollama-compatible local API (with RAG as model `rag:COLLECTION`) and the dashboard."""
    import uvicorn

    from outpost.api import create_app

    settings = Outpost(home=ctx.obj.get("home"), api_key=api_key, keep_alive=keep_alive, serve_host=host).settings
    host = settings.serve_host
    if host not in LOOPBACK and not settings.api_key:
        err.print("warning: serving beyond this machine without --api-key")
    err.print(f"Outpost API on http://{host}:{port} (OpenAI: /v1, Ollama: /api)")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command("serve")(guarded(serve_cmd))
