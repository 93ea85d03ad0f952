"""`outpost feedback` (list, vote): votes on answers, queued until `outpost sync` uploads them."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from outpost.app import Outpost
from outpost.cli.console import err, guarded, out, print_json
from outpost.errors import ConfigError

feedback_app = typer.Typer(
    help="Votes on answers, queued until `outpost sync` uploads them.", invoke_without_command=True
)


@feedback_app.callback()
@guarded
def feedback_list(
    ctx: typer.Context,
    show_all: Annotated[bool, typer.Option("--all", help="Also answers without votes, and uploaded ones.")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List queued votes (what `outpost sync` will upload)."""
    if ctx.invoked_subcommand:
        return
    queue = Outpost(home=ctx.obj.get("home")).feedback
    items = queue.all() if show_all else queue.pending()
    if json_out:
        print_json(
            [
                {
                    **i.payload(True),
                    "collection": i.collection,
                    "created_at": i.created_at,
                    "uploaded_at": i.uploaded_at,
                    "query_vector": None,
                }
                for i in items
            ]
        )
        return
    table = Table("id", "collection", "query", "answer", "sources", "uploaded")
    for i in items:
        vote = {1: "helpful", 0: "not helpful", None: "-"}[i.answer_vote]
        sources = ", ".join(
            f"[{i.shown.index(c) + 1}]{'+' if v else '-'}" for c, v in i.source_votes.items() if c in i.shown
        )
        table.add_row(i.id[:12], i.collection, i.query[:60], vote, sources, i.uploaded_at or "queued")
    out.print(table if items else "No queued feedback.")


def _vote_word(word: str) -> bool:
    if word.lower() in ("up", "yes", "helpful", "good", "+"):
        return True
    if word.lower() in ("down", "no", "unhelpful", "bad", "-"):
        return False
    raise ConfigError(f"A vote is up or down, not {word!r}")


@feedback_app.command("vote")
@guarded
def feedback_vote(
    ctx: typer.Context,
    answer_id: Annotated[str, typer.Argument(help="The answer's id (printed by `outpost ask`), or a prefix.")],
    vote: Annotated[Optional[str], typer.Argument(help="up or down, for the answer as a whole.")] = None,
    source: Annotated[
        Optional[list[str]],
        typer.Option("--source", help="A source's vote as N:up or N:down, e.g. --source 2:down (repeatable)."),
    ] = None,
) -> None:
    """Vote on an answer and/or on individual sources."""
    sources: dict[int, bool] = {}
    for item in source or []:
        number, _, word = item.partition(":")
        if not number.isdigit():
            raise ConfigError(f"--source takes N:up or N:down, not {item!r}")
        sources[int(number)] = _vote_word(word)
    queue = Outpost(home=ctx.obj.get("home")).feedback
    voted = queue.vote(answer_id, _vote_word(vote) if vote else None, sources)
    err.print(f"queued vote on {voted.id[:12]} ({voted.collection}); `outpost sync` uploads it")


def register(app: typer.Typer) -> None:
    app.add_typer(feedback_app, name="feedback")
