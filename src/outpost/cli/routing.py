"""`outpost remote add|list|rm`, `outpost audit`, `outpost usage`: hybrid answering's commands (docs/routing.md)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone
from typing import Annotated, Optional

import typer
from rich.table import Table

from outpost.app import Outpost
from outpost.audit import AuditLog
from outpost.cli.console import guarded, out, print_json
from outpost.cli.options import default_of
from outpost.costs import BreakEven, break_even
from outpost.errors import ConfigError
from outpost.remotes import RemoteConfig, RemoteStore

remote_app = typer.Typer(
    help="Remote OpenAI-compatible models the routing policy may use ([routing] in config.toml).",
    no_args_is_help=True,
)
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _op(ctx: typer.Context) -> Outpost:
    return Outpost(home=ctx.obj.get("home"))


@remote_app.command("add")
@guarded
def add_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name for the remote (letters, digits, '.', '_', '-').")],
    url: Annotated[str, typer.Option(help="OpenAI base URL, e.g. http://gpu-box:8000/v1.")],
    model: Annotated[str, typer.Option(help="The model name the endpoint serves.")],
    api_key_env: Annotated[
        Optional[str], typer.Option(help="Environment variable holding the API key (read at call time, never stored).")
    ] = None,
    trusted: Annotated[bool, typer.Option("--trusted", help="May receive `internal` collections' text.")] = False,
    price_in: Annotated[float, typer.Option(min=0.0, help="USD per million prompt tokens.")] = default_of(
        RemoteConfig, "price_in"
    ),
    price_out: Annotated[float, typer.Option(min=0.0, help="USD per million completion tokens.")] = default_of(
        RemoteConfig, "price_out"
    ),
    ctx_tokens: Annotated[int, typer.Option("--ctx", min=256, help="The remote model's context window.")] = default_of(
        RemoteConfig, "n_ctx"
    ),
) -> None:
    """Add (or replace) a remote; the key stays in the environment variable named by --api-key-env."""
    remote = RemoteConfig(name, url, model, api_key_env, trusted, price_in, price_out, ctx_tokens)
    RemoteStore(_op(ctx).settings.home).add(remote)
    out.print(f"remote {name}: {url} ({model}){' trusted' if trusted else ''}")


@remote_app.command("list")
@guarded
def list_cmd(ctx: typer.Context, json_out: Json = False) -> None:
    """Configured remotes (keys are never shown: only the variable that holds each)."""
    remotes = RemoteStore(_op(ctx).settings.home).list()
    if json_out:
        print_json([asdict(r) for r in remotes])
        return
    table = Table("name", "url", "model", "trusted", "key from", "$/Mtok in", "$/Mtok out", "context")
    for r in remotes:
        table.add_row(
            r.name, r.url, r.model, "yes" if r.trusted else "no", r.api_key_env or "-", f"{r.price_in:g}",
            f"{r.price_out:g}", str(r.n_ctx),
        )  # fmt: skip
    out.print(table if remotes else "No remotes: `outpost remote add NAME --url URL --model MODEL`.")


@remote_app.command("rm")
@guarded
def rm_cmd(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The remote to remove.")]) -> None:
    """Remove a remote."""
    RemoteStore(_op(ctx).settings.home).remove(name)
    out.print(f"removed remote {name}")


def _since(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).isoformat()
    except ValueError:
        raise ConfigError(f"--since {value!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None


def audit_cmd(
    ctx: typer.Context,
    since: Annotated[Optional[str], typer.Option(help="Only decisions at or after this UTC date (YYYY-MM-DD).")] = None,
    json_out: Json = False,
) -> None:
    """Every routing decision: when, where the question went and why, what was sent, tokens and cost."""
    entries = AuditLog(_op(ctx).settings.home).entries(_since(since))
    if json_out:
        print_json([asdict(e) for e in entries])
        return
    table = Table("time", "route", "model", "collections", "sent", "tokens in/out", "cost $", "reason")
    for e in entries:
        labels = ", ".join(f"{name} ({label})" for name, label in e.collections.items())
        table.add_row(
            e.at, e.route, e.model, labels, str(len(e.chunks_sent)), f"{e.tokens_in}/{e.tokens_out}",
            f"{e.cost_usd:.6f}", e.reason,
        )  # fmt: skip
    out.print(table if entries else "No answers on record yet.")


def usage_cmd(
    ctx: typer.Context,
    month: Annotated[Optional[str], typer.Option(help="YYYY-MM (default: this month; 'all' for all time).")] = None,
    json_out: Json = False,
) -> None:
    """Tokens answered locally vs remotely, what the remote calls cost, and what local answering saved."""
    period = month or datetime.now(timezone.utc).strftime("%Y-%m")
    totals = AuditLog(_op(ctx).settings.home).usage(None if period == "all" else period)
    if json_out:
        print_json(asdict(totals))
        return
    t = totals
    out.print(f"{t.period}: {t.answers_local} answers local ({t.fallbacks} after a remote failed), "
              f"{t.answers_remote} remote")  # fmt: skip
    out.print(f"  local tokens:  {t.tokens_local_in} in, {t.tokens_local_out} out")
    out.print(f"  remote tokens: {t.tokens_remote_in} in, {t.tokens_remote_out} out — cost ${t.cost_usd:.4f}")
    out.print(f"  local answering saved ${t.saved_usd:.4f} (the local tokens at the remote's prices)")


TYPICAL_TOKENS = (1500, 250)  # a RAG request: 5 chunks of ~200 words + the question in, a short answer out


def _typical_tokens(log: AuditLog) -> tuple[int, int]:
    """Mean tokens in/out of the answers on record; a typical RAG request when there are none yet."""
    done = [e for e in log.entries() if e.tokens_in]
    if not done:
        return TYPICAL_TOKENS
    return round(sum(e.tokens_in for e in done) / len(done)), round(sum(e.tokens_out for e in done) / len(done))


def fit_break_even(
    op: Outpost, tps: float, volume: float, price_in: float | None, price_out: float | None, hardware_usd: float
) -> BreakEven:
    """``models fit --volume``: the policy's remote prices (or the flags') against this machine's speed."""
    remote = op.router.remote() if price_in is None or price_out is None else None
    if (price_in is None or price_out is None) and remote is None:
        raise ConfigError("No remote to price against: pass --price-in and --price-out, or `outpost remote add`")
    tokens_in, tokens_out = _typical_tokens(op.router.audit)
    return break_even(
        volume,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        price_in=price_in if price_in is not None else remote.price_in,  # type: ignore[union-attr]
        price_out=price_out if price_out is not None else remote.price_out,  # type: ignore[union-attr]
        decode_tps=tps,
        hardware_usd=hardware_usd,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(remote_app, name="remote")
    app.command("audit")(guarded(audit_cmd))
    app.command("usage")(guarded(usage_cmd))
