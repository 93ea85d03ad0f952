"""`outpost hub ...`: run a hub (init, ingest, tokens, serve)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from outpost.app import Outpost
from outpost.cli.console import err, guarded, out, print_json, progress_bars
from outpost.cli.local import print_report
from outpost.cli.options import default_of, setting_option
from outpost.finetune import TrainConfig
from outpost.finetune.embedder import EmbedderTrainConfig
from outpost.hub.embedder_learning import learn_embedder
from outpost.hub.finetune import finetune
from outpost.hub.home import HubHome
from outpost.hub.learning import train_and_publish
from outpost.hub.service import Hub
from outpost.hub.tokens import Tokens
from outpost.ingest.limits import ReadLimits
from outpost.ingest.pipeline import Stages
from outpost.labels import set_label
from outpost.models.registry import Registry
from outpost.settings import Settings

hub_app = typer.Typer(
    help="Run a hub: ingest centrally, publish signed packs, serve them to outposts.", no_args_is_help=True
)
token_app = typer.Typer(help="Create, list and revoke hub tokens.", no_args_is_help=True)
hub_app.add_typer(token_app, name="token")


def _settings(ctx: typer.Context) -> Settings:
    home = ctx.obj.get("home")
    return Settings(home=home) if home else Settings()


def _hub_home(ctx: typer.Context) -> HubHome:
    settings = _settings(ctx)
    return HubHome.at(settings.home, settings.hub_db)


@hub_app.command("init")
@guarded
def init_cmd(ctx: typer.Context) -> None:
    """Create the hub home and its Ed25519 signing key (once); print the public key clients pin."""
    home = _hub_home(ctx)
    existed = home.exists()
    key = home.init()
    err.print(f"{'Hub already initialised' if existed else 'Hub initialised'} at {home.root}")
    out.print(key)


@hub_app.command("ingest")
@guarded
def ingest_cmd(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest.")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Hub collection name.")],
    sync: Annotated[bool, typer.Option("--sync", help="Also remove documents no longer present.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Read, chunk and embed on a Ray cluster (needs outpost[ray] and the files at the same path on "
            "every node).",
        ),
    ] = False,
    ray_address: Annotated[
        Optional[str],
        typer.Option(
            "--ray-address",
            metavar="ADDRESS",
            help="The Ray cluster for --ray, e.g. head:6379 (implies --ray; default: RAY_ADDRESS, else a new local "
            "one).",
        ),
    ] = None,
) -> None:
    """Ingest into a hub collection; any change publishes exactly one new version, atomically."""
    settings = _settings(ctx)
    op = Outpost(settings=settings)
    embedder = op.embedder()
    chunker = op.chunker(embedder)
    hub = Hub(_hub_home(ctx), settings.exact_search_below)
    with ExitStack() as stack:
        stages: Stages | None = None
        if ray or ray_address:
            from outpost.ingest.ray_pipeline import ray_stages

            stages = stack.enter_context(ray_stages(ray_address, settings, embedder, chunker))
        progress = stack.enter_context(progress_bars(not quiet))
        limits = ReadLimits.from_settings(settings)
        report = hub.ingest(paths, collection, embedder, chunker, sync, progress, limits, stages)
    print_report(report)
    if not report.ok:
        raise typer.Exit(1)


@hub_app.command("train")
@guarded
def train_cmd(
    ctx: typer.Context,
    collection: Annotated[str, typer.Option("--collection", "-c", help="Hub collection to adapt.")],
    min_examples: Annotated[int, typer.Option(help="Fewest judged queries to train on.")] = default_of(
        train_and_publish, "min_examples"
    ),
    min_gain: Annotated[float, typer.Option(help="Held-out MRR@10 gain needed to publish.")] = default_of(
        train_and_publish, "min_gain"
    ),
) -> None:
    """Fit a query adapter from the collection's feedback; publish it only if it beats the current one."""
    share = _settings(ctx).hub_feedback_token_share
    report = train_and_publish(Hub(_hub_home(ctx)), collection, min_examples, min_gain, share)
    err.print(f"{collection}: {report.reason} ({report.train_examples} train / {report.heldout_examples} held out)")
    if report.published:
        out.print(f"published adapter v{report.adapter_version} in collection version {report.collection_version}")


@hub_app.command("rollback")
@guarded
def rollback_cmd(
    ctx: typer.Context, collection: Annotated[str, typer.Option("--collection", "-c", help="Hub collection.")]
) -> None:
    """Restore the previous query adapter (as a new version: versions only move forward)."""
    from outpost.hub.learning import rollback

    version, adapter = rollback(Hub(_hub_home(ctx)), collection)
    out.print(f"{collection} v{version} now carries adapter v{adapter}" + (" (identity)" if adapter == 0 else ""))


@hub_app.command("rollback-embedder")
@guarded
def rollback_embedder_cmd(
    ctx: typer.Context, collection: Annotated[str, typer.Option("--collection", "-c", help="Hub collection.")]
) -> None:
    """Go back to the embedder the collection had before its latest switch (a fine-tune's predecessor): every chunk
    is re-embedded with it in one new version, and laptops switch back at their next sync."""
    from outpost.hub.embedder import rollback_embedder

    settings = _settings(ctx)
    hub = Hub(HubHome.at(settings.home, settings.hub_db))
    with progress_bars(True) as progress:
        version = rollback_embedder(hub, collection, Outpost(settings=settings).embedder(), progress=progress)
    identity = hub.info(collection).embedding
    out.print(f"{collection} v{version} embeds with {identity.short() if identity else '?'}")


@hub_app.command("finetune")
@guarded
def finetune_cmd(
    ctx: typer.Context,
    collection: Annotated[str, typer.Option("--collection", "-c", help="Hub collection the adapter is for.")],
    base: Annotated[str, typer.Option("--base", help="Answer model to adapt (name or .gguf path).")] = default_of(
        finetune, "base"
    ),
    pairs: Annotated[
        Optional[Path], typer.Option("--pairs", help='JSONL of {"question", "answer"[, "heldout"]} pairs.')
    ] = None,
    generate: Annotated[int, typer.Option(min=0, help="Also generate pairs from up to N chunks with --base.")] = 0,
    steps: Annotated[int, typer.Option(min=0, help="Training steps.")] = default_of(TrainConfig, "steps"),
    rank: Annotated[int, typer.Option(min=1, help="LoRA rank.")] = default_of(TrainConfig, "rank"),
    layers: Annotated[
        Optional[int], typer.Option(min=1, help="Adapt the last N layers (default: 4 on CPU, all on a GPU).")
    ] = None,
    learning_rate: Annotated[float, typer.Option("--lr", min=0.0, help="Peak learning rate.")] = default_of(
        TrainConfig, "learning_rate"
    ),
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Hub model name (default COLLECTION-lora).")] = None,
    min_gain: Annotated[
        float, typer.Option(help="Held-out log-likelihood gain per token needed to publish.")
    ] = default_of(finetune, "min_gain"),
) -> None:
    """Train a LoRA for the answer model on Q/A pairs; publish it as hub://NAME only if it beats the base."""
    config = TrainConfig(steps=steps, rank=rank, alpha=2.0 * rank, learning_rate=learning_rate, layers=layers)
    settings = _settings(ctx)
    report = finetune(
        Hub(HubHome.at(settings.home, settings.hub_db)),
        collection,
        base,
        pairs_file=pairs,
        generate=generate,
        config=config,
        name=name,
        min_gain=min_gain,
        n_threads=settings.n_threads,
    )
    trained = report.trained
    if trained is not None:
        err.print(
            f"{collection}: {report.train_pairs} pairs trained on, {report.heldout_pairs} held out "
            f"({', '.join(f'{n} {k}' for k, n in report.sources.items())}); {trained.steps} steps on "
            f"{trained.device} in {trained.seconds:.0f} s"
            + (f", loss {trained.losses[0]:.3f} → {trained.losses[-1]:.3f}" if trained.losses else "")
        )
    if not report.published:
        err.print(f"{collection}: {report.reason}")
        raise typer.Exit(1)
    err.print(f"{collection}: {report.reason}")
    out.print(f"published hub model {report.model}: pull it with `outpost models pull hub://{report.model}`")


@hub_app.command("learn-embedder")
@guarded
def learn_embedder_cmd(
    ctx: typer.Context,
    collection: Annotated[str, typer.Option("--collection", "-c", help="Hub collection whose embedder to fine-tune.")],
    generator: Annotated[
        Optional[str],
        typer.Option(help="GGUF (name or path) that writes questions for chunks; 'none': judged queries only."),
    ] = "gemma3-270m",
    max_chunks: Annotated[
        int,
        typer.Option(
            min=0, help="Chunks to generate questions for (16 at a time: about 2.5 a second on two idle cores)."
        ),
    ] = default_of(learn_embedder, "max_chunks"),
    generate_minutes: Annotated[
        Optional[float], typer.Option(min=0.0, help="Stop generating after this many minutes (cached questions stay).")
    ] = None,
    steps: Annotated[int, typer.Option(min=1, help="Most training steps.")] = default_of(
        EmbedderTrainConfig, "max_steps"
    ),
    epochs: Annotated[float, typer.Option(min=0.0, help="Passes over the pairs (capped by --steps).")] = default_of(
        EmbedderTrainConfig, "epochs"
    ),
    batch_size: Annotated[int, typer.Option(min=2, help="Pairs per step (in-batch negatives).")] = default_of(
        EmbedderTrainConfig, "batch_size"
    ),
    max_seq_length: Annotated[int, typer.Option(min=16, help="Word pieces per passage while training.")] = default_of(
        EmbedderTrainConfig, "max_seq_length"
    ),
    learning_rate: Annotated[float, typer.Option("--lr", min=0.0, help="Peak learning rate.")] = default_of(
        EmbedderTrainConfig, "learning_rate"
    ),
    min_gain: Annotated[
        float, typer.Option(help="Held-out nDCG@10 and MRR@10 gain both needed to publish.")
    ] = default_of(learn_embedder, "min_gain"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Train and gate, publish nothing.")] = False,
) -> None:
    """Fine-tune the collection's embedder on generated questions and judged feedback; publish it as a new
    embedding identity (every chunk re-embedded) only if held-out nDCG@10 and MRR@10 both improve."""
    from outpost.models.resolve import resolve_model

    settings = _settings(ctx)
    hub = Hub(HubHome.at(settings.home, settings.hub_db))
    gguf = None if (generator or "none").lower() == "none" else resolve_model(hub.home.root, generator or "").path
    config = EmbedderTrainConfig(
        max_steps=steps,
        epochs=epochs,
        batch_size=batch_size,
        max_seq_length=max_seq_length,
        learning_rate=learning_rate,
    )
    with progress_bars(True) as progress:
        report = learn_embedder(
            hub,
            collection,
            settings,
            generator=gguf,
            max_chunks=max_chunks,
            generate_minutes=generate_minutes,
            config=config,
            min_gain=min_gain,
            token_share=settings.hub_feedback_token_share,
            publish=not dry_run,
            progress=progress,
        )
    sources = ", ".join(f"{n} {k}" for k, n in report.sources.items()) or "none"
    err.print(
        f"{collection}: training pairs: {sources}; {report.generated} generated questions "
        f"({report.inconsistent} dropped by the consistency filter); {report.heldout} held out; "
        f"{report.steps} steps in {report.train_seconds:.0f} s"
    )
    err.print(f"{collection}: {report.reason}")
    if not report.published and not (dry_run and report.gate and report.gate.improved):
        raise typer.Exit(1)
    if report.published:
        out.print(f"{collection} v{report.version} uses the fine-tuned embedder")


feedback_app = typer.Typer(help="Feedback the hub learns from.", no_args_is_help=True)
hub_app.add_typer(feedback_app, name="feedback")


@feedback_app.command("import")
@guarded
def feedback_import(
    ctx: typer.Context,
    qrels: Annotated[Path, typer.Argument(help="Judgements: query-id, doc-id, grade (TSV, BEIR qrels).")],
    queries: Annotated[Path, typer.Argument(help="Queries: JSONL with _id and text (BEIR).")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Hub collection the doc ids belong to.")],
) -> None:
    """Turn labelled queries into feedback, so the learning loop can be measured on public data."""
    from outpost.evaluate import load_qrels, load_queries
    from outpost.hub.learning import import_qrels

    settings = _settings(ctx)
    embedder = Outpost(settings=settings).embedder()
    added = import_qrels(Hub(_hub_home(ctx)), collection, embedder, load_qrels(qrels), load_queries(queries))
    err.print(f"imported {added} labelled queries as feedback for {collection}")


@hub_app.command("prune")
@guarded
def prune_cmd(
    ctx: typer.Context,
    keep_versions: Annotated[
        Optional[int],
        setting_option("hub_keep_versions", "--keep-versions", help="Clients this many versions behind get deltas"),
    ] = None,
    collection: Annotated[Optional[list[str]], typer.Option("--collection", "-c", help="Only this collection.")] = None,
) -> None:
    """Delete packs no supported client needs: deleted documents stop being downloadable (older clients get a
    snapshot)."""
    from outpost.hub.prune import prune_all

    settings = _settings(ctx)
    keep = settings.hub_keep_versions if keep_versions is None else keep_versions
    for report in prune_all(Hub(_hub_home(ctx)), keep, collection):
        err.print(
            f"{report.collection}: v{report.version}, deltas from v{report.oldest_supported}; "
            f"removed {len(report.removed)} packs, kept {len(report.kept)}"
        )


@hub_app.command("label")
@guarded
def label_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The hub collection.")],
    label: Annotated[str, typer.Argument(help="private (never leaves a laptop), internal (trusted remotes), public.")],
) -> None:
    """Set the sensitivity label a hub collection ships with; every laptop takes it at its next sync."""
    store = Hub(_hub_home(ctx)).store(name)
    try:
        out.print(f"{name}: {set_label(store, label)}")
    finally:
        store.close()


@hub_app.command("collections")
@guarded
def collections_cmd(ctx: typer.Context, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List hub collections and their latest published versions."""
    hub = Hub(_hub_home(ctx))
    infos = [hub.info(n) for n in hub.names()]
    if json_out:  # with each switch of embedder (fine-tune, rollback) and its gate metrics, per version
        from dataclasses import asdict

        from outpost.hub.embedder import embedder_history

        print_json([{**asdict(i), "embedders": embedder_history(hub, i.name)} for i in infos])
        return
    table = Table("name", "version", "documents", "chunks")
    for i in infos:
        table.add_row(i.name, str(i.version), str(i.documents), str(i.chunks))
    out.print(table)


def _tls_options(cert: Path | None, key: Path | None) -> dict[str, str]:
    """uvicorn's ssl options for ``--tls-cert``/``--tls-key``, checked before the server starts."""
    import ssl

    from outpost.errors import ConfigError

    if cert is None and key is None:
        return {}
    if cert is None or key is None:
        raise ConfigError("--tls-cert and --tls-key go together: the certificate (PEM) and its private key")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"Cannot serve TLS with {cert} and {key}: {exc}") from exc
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}


@hub_app.command("serve")
@guarded
def serve_cmd(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8765,
    tls_cert: Annotated[
        Optional[Path], typer.Option("--tls-cert", help="Serve HTTPS with this PEM certificate (chain).")
    ] = None,
    tls_key: Annotated[Optional[Path], typer.Option("--tls-key", help="The PEM private key of --tls-cert.")] = None,
) -> None:
    """Serve the hub API (collections, signed packs with HTTP Range) with uvicorn, over HTTPS with --tls-cert."""
    import uvicorn

    from outpost.hub import create_app
    from outpost.packs.signing import fingerprint

    tls = _tls_options(tls_cert, tls_key)
    app = create_app(_settings(ctx))
    key = _hub_home(ctx).public_key
    scheme = "https" if tls else "http"
    err.print(f"Outpost hub on {scheme}://{host}:{port} — public key {key}\n  key fingerprint {fingerprint(key)}")
    if not tls and host not in ("127.0.0.1", "localhost", "::1"):
        err.print("warning: plain HTTP: tokens and packs cross the network unencrypted; use --tls-cert/--tls-key")
    uvicorn.run(app, host=host, port=port, log_level="warning", **tls)  # type: ignore[arg-type]


models_app = typer.Typer(
    help="Approved GGUF models the hub serves to tokens allowed to read them.", no_args_is_help=True
)
hub_app.add_typer(models_app, name="models")


@models_app.command("add")
@guarded
def models_add(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The .gguf file to host.")],
    name: Annotated[Optional[str], typer.Option("--name", help="Name clients pull (hub://NAME).")] = None,
) -> None:
    """Host a GGUF model on the hub (copied, hashed); grant it with `hub token create --model NAME`."""
    with progress_bars() as progress:
        entry = Registry(_hub_home(ctx).require().root).pull_file(file, name, progress)
    err.print(f"hub model {entry.name}: {entry.size / 1e6:.0f} MB, sha256 {entry.sha256[:12]}")


@token_app.command("create")
@guarded
def token_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Who or what the token is for.")],
    read: Annotated[Optional[list[str]], typer.Option("--read", help="Collection it may read (repeatable).")] = None,
    write: Annotated[Optional[list[str]], typer.Option("--write", help="Collection it may write (repeatable).")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="May read and write everything.")] = False,
    model: Annotated[Optional[list[str]], typer.Option("--model", help="Hub model it may pull (repeatable).")] = None,
    feedback: Annotated[
        Optional[list[str]],
        typer.Option("--feedback", help="Collection it may upload votes to (repeatable; `--read` does not imply it)."),
    ] = None,
) -> None:
    """Create a token and print it once (only its hash is stored)."""
    secret, info = Tokens(_hub_home(ctx).require()).create(
        name, read or [], write or [], admin, model or [], feedback or []
    )
    err.print(f"Token {info.id} for {name!r}; store it now, it is not shown again:")
    out.print(secret)


@token_app.command("list")
@guarded
def token_list(ctx: typer.Context, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List tokens (never their secrets): id, name, scopes, created, revoked."""
    infos = Tokens(_hub_home(ctx).require()).list()
    if json_out:
        print_json(infos)
        return
    table = Table("id", "name", "scopes", "created", "revoked")
    for i in infos:
        scopes = "admin" if i.admin else ", ".join(f"{r}:{n}" for _, n, r in i.scopes)
        table.add_row(str(i.id), i.name, scopes, i.created_at, i.revoked_at or "")
    out.print(table)


@token_app.command("revoke")
@guarded
def token_revoke(
    ctx: typer.Context, token: Annotated[str, typer.Argument(help="Token id, or name (revokes all of that name).")]
) -> None:
    """Revoke a token: it is refused from the next request on."""
    for info in Tokens(_hub_home(ctx).require()).revoke(token):
        err.print(f"revoked token {info.id} ({info.name})")
