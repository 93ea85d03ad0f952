"""`outpost sync` and `outpost status`: the laptop side of a hub."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from outpost.app import Outpost
from outpost.cli.console import err, guarded, out, print_json, progress_bars
from outpost.errors import ConfigError
from outpost.hubclient import tls_verify
from outpost.hubs import HubConfig, hub_name, load_hubs
from outpost.packs.signing import fingerprint
from outpost.sync import SyncReport, hub_versions, sync_hub


def _read_ca(path: Path, url: str) -> str:
    """The PEM text of a private CA for ``--hub-ca``, checked now (a typo must not wait for the next sync)."""
    if not url.startswith("https://"):
        raise ConfigError(f"--hub-ca pins the CA of an https:// hub, and {url} is not one")
    try:
        pem = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read the hub CA {path}: {exc}") from exc
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise ConfigError(f"{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    tls_verify(pem)
    return pem


def _targets(home: Path, url: str | None, token: str | None, ca: Path | None = None) -> list[HubConfig]:
    saved = {h.url: h for h in load_hubs(home)}
    if url:
        url = url.rstrip("/")
        config = saved.get(url) or HubConfig(hub_name(url), url, token or "")
        if token:
            config.token = token
        if not config.token:
            raise ConfigError(f"No token for {url}: pass --token")
        if ca is not None:
            config.ca_pem = _read_ca(ca, url)  # saved with the hub's config: later syncs verify against it
        return [config]
    if ca is not None:
        raise ConfigError("--hub-ca needs --hub URL: it pins the CA of that hub")
    if not saved:
        raise ConfigError("No hub configured yet: outpost sync --hub URL --token TOKEN")
    return list(saved.values())


def _warn_first_pin(url: str) -> Callable[[str], None]:
    def warn(key: str) -> None:
        err.print(
            f"WARNING: first sync with {url}: trusting the signing key it presented, unverified.\n"
            f"  key:         {key}\n"
            f"  fingerprint: {fingerprint(key)}\n"
            "Compare the fingerprint with the one `outpost hub serve` prints on the hub (or ask its operator). "
            "Every later sync refuses any other key. To pin the key up front instead, sync with "
            f"`outpost sync --hub {url} --hub-key {key}`.",
            style="bold yellow",
        )

    return warn


def _print(report: SyncReport) -> None:
    for name, (old, new, pack) in report.updated.items():
        err.print(f"{name}: v{old} → v{new} ({pack})")
    for name in report.current:
        err.print(f"{name}: up to date")
    for name, why in report.failed.items():
        err.print(f"{name}: {why}", style="red")
    if report.feedback_uploaded:
        err.print(f"uploaded {report.feedback_uploaded} feedback votes")
    for name in report.unshared:
        err.print(f"{name}: no longer shared by {report.hub} (run with --prune to delete it)")


def sync_cmd(
    ctx: typer.Context,
    hub: Annotated[Optional[str], typer.Option("--hub", help="Hub URL, e.g. http://server:8765 (saved).")] = None,
    token: Annotated[Optional[str], typer.Option("--token", envvar="OUTPOST_HUB_TOKEN", help="Hub token.")] = None,
    hub_key: Annotated[
        Optional[str],
        typer.Option("--hub-key", help="The hub's public key (ed25519:...) to pin; else pinned on first use."),
    ] = None,
    hub_ca: Annotated[
        Optional[Path],
        typer.Option(
            "--hub-ca", help="PEM certificate of the private CA that signed the hub's TLS certificate (saved)."
        ),
    ] = None,
    prune: Annotated[bool, typer.Option("--prune", help="Delete local copies the token no longer sees.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Download and apply every collection the token may read (delta when possible), verified and atomic."""
    settings = Outpost(home=ctx.obj.get("home")).settings
    home = settings.home
    failed = False
    for config in _targets(home, hub, token, hub_ca):
        with progress_bars(not quiet) as progress:
            report = sync_hub(
                home,
                config,
                hub_key,
                prune,
                settings.exact_search_below,
                progress,
                settings.share_query_text,
                max_pack_bytes=settings.max_pack_bytes,
                on_first_pin=_warn_first_pin(config.url),
            )
        _print(report)
        failed |= bool(report.failed)
    if failed:
        raise typer.Exit(1)


def status_cmd(ctx: typer.Context, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Local collections: version, hub version when reachable, last sync, size."""
    op = Outpost(home=ctx.obj.get("home"))
    hubs = {h.url: h for h in load_hubs(op.settings.home)}
    remote = {url: hub_versions(h) for url, h in hubs.items()}
    rows: list[dict[str, Any]] = []
    for info in op.collections():
        store = op.store(info.name)
        origin = store.get_meta("hub") or ""
        versions = remote.get(origin) if origin else None
        rows.append(
            {
                "name": info.name,
                "version": info.version,
                "hub": origin or None,
                "hub_version": versions.get(info.name) if versions else None,
                "hub_reachable": versions is not None if origin else None,
                "last_sync": store.get_meta("last_sync"),
                "bytes_on_disk": info.bytes_on_disk,
            }
        )
    if json_out:
        print_json(rows)
        return
    table = Table("name", "version", "hub version", "source", "last sync", "size")
    for r in rows:
        hub_v = "local" if not r["hub"] else (str(r["hub_version"]) if r["hub_reachable"] else "unreachable")
        table.add_row(
            r["name"],
            str(r["version"]),
            hub_v,
            r["hub"] or "local",
            r["last_sync"] or "",
            f"{r['bytes_on_disk'] / 1e6:.1f} MB",
        )
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("sync")(guarded(sync_cmd))
    app.command("status")(guarded(status_cmd))
