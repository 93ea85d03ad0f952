"""Entry point: global options, then the command groups."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from outpost import __version__
from outpost.cli import evaluate, feedback, local, models, routing, serve, sync
from outpost.cli.console import quiet_libraries
from outpost.cli.hub import hub_app
from outpost.home import restrict_umask
from outpost.settings import Settings

app = typer.Typer(
    name="outpost",
    help="Private, offline-first question answering over your own documents.\n\n"
    "Start with `outpost quickstart`, then `outpost ingest PATH --collection NAME` and "
    '`outpost ask "QUESTION" --collection NAME`. All state lives in OUTPOST_HOME.',
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"outpost {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    home: Annotated[
        Optional[Path],
        typer.Option("--home", envvar="OUTPOST_HOME", help=Settings.model_fields["home"].description),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    quiet_libraries()
    restrict_umask()  # whatever any command or library writes under the home is private (outpost.home)
    if home is not None:  # every Settings() in this process (config.toml included) follows --home
        os.environ["OUTPOST_HOME"] = str(home)
    ctx.obj = {"home": home}


local.register(app)
sync.register(app)
models.register(app)
serve.register(app)
evaluate.register(app)
feedback.register(app)
routing.register(app)
app.add_typer(hub_app, name="hub")


def main() -> None:
    app()
