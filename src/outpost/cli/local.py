"""Local commands: ingest, search, ask, collections, quickstart."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from outpost.app import DEFAULT_COLLECTION, Outpost
from outpost.cli.console import err, guarded, out, print_json, progress_bars
from outpost.cli.options import setting_option
from outpost.ingest.pipeline import IngestReport
from outpost.records import Answer, Hit
from outpost.retrieve import Mode

QUICKSTART_QUESTION = "How many vacation days do new hires get?"

Collection = Annotated[
    str, typer.Option("--collection", "-c", help="Collection name (letters, digits, '.', '_', '-').")
]
K = Annotated[Optional[int], setting_option("top_k", "-k", "--top-k", help="How many chunks to retrieve")]
ModeOpt = Annotated[str, typer.Option("--mode", help="Retriever: hybrid (BM25 + vectors, fused), bm25 or dense.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")]
EmbedModel = Annotated[
    Optional[str],
    setting_option("embed_model", "--embed-model"),
]


def _outpost(ctx: typer.Context, **overrides: Any) -> Outpost:
    return Outpost(home=ctx.obj.get("home"), **overrides)


def _mode(value: str) -> Mode:
    if value not in ("hybrid", "bm25", "dense"):
        raise typer.BadParameter(f"--mode must be hybrid, bm25 or dense, not {value!r}")
    return value  # type: ignore[return-value]


def _hit_json(hit: Hit) -> dict[str, object]:
    c = hit.chunk
    return {
        "document": c.doc_key,
        "page": c.page,
        "heading": c.heading,
        "chunk_id": c.id,
        "score": hit.score,
        "bm25_rank": hit.bm25_rank,
        "dense_rank": hit.dense_rank,
        "text": c.text,
    }


def _answer_json(answer: Answer) -> dict[str, object]:
    return {
        "question": answer.question,
        "answer": answer.text,
        "model": answer.model,
        "collection": answer.collection,
        "cited": answer.cited,
        "id": answer.id,
        "generated": answer.generated,
        "grounding": answer.grounding,
        "claims": [asdict(c) for c in answer.claims],
        "evidence": [asdict(e) for e in answer.evidence],
        "notice": answer.notice,
        "grounding_ms": answer.grounding_ms,
        "confidence": answer.confidence,
        "route": answer.route,
        "route_reason": answer.route_reason,
        "sources": [
            {
                "number": s.number,
                "document": s.document,
                "page": s.page,
                "heading": s.heading,
                "chunk_id": s.chunk_id,
                "score": s.score,
                "text": s.text,
                "evidence": [asdict(e) for e in s.evidence],
            }
            for s in answer.sources
        ],
    }


def print_report(report: IngestReport) -> None:
    for key, reason in report.failures:
        err.print(Text.assemble(("skipped", "red"), f" {key}: {reason}"))
    err.print(
        f"{report.collection} v{report.version}: {len(report.added)} added, {len(report.updated)} updated, "
        f"{len(report.removed)} removed, {report.unchanged} unchanged; "
        f"{report.chunks_embedded} chunks embedded, {report.chunks_reused} reused"
        + (f"; {len(report.failures)} failed" if report.failures else "")
    )


def _print_grounding(answer: Answer) -> None:
    """Under the streamed reply: what the check found (unsupported sentences marked), then the evidence."""
    if answer.notice and answer.grounding == "extractive":
        out.print(f"({answer.notice})")
    elif answer.grounding == "unsupported":
        out.print("")
        for claim in answer.claims:
            out.print(f"✗ “{claim.text}” — {claim.reason}")
        out.print(answer.text)
    elif answer.grounding == "partial":
        for claim in answer.claims:
            if not claim.supported:
                out.print(f"✗ “{claim.text}” — {claim.reason}")
    elif answer.grounding == "supported":
        out.print("✓ every sentence is supported by the sources")
    if answer.evidence:
        out.print("\nEvidence:")
        for item in answer.evidence:
            out.print(f"  [{item.source}] “{item.text}”")


def _print_route(answer: Answer, asked: bool) -> None:
    """Where the answer came from, when it matters: always after --remote, else only for remote or fallback."""
    if asked or answer.route != "local":
        where = f"answered by {answer.model}" if answer.route == "remote" else "answered locally"
        out.print(f"\n({where}: {answer.route_reason})")


def _print_sources(answer: Answer) -> None:
    out.print("\nSources:")
    for s in answer.sources:
        mark = "*" if s.number in answer.cited else " "
        out.print(f" {mark}{s.label()}  {s.heading}".rstrip())


def ingest_cmd(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (folders are read recursively).")],
    collection: Collection = DEFAULT_COLLECTION,
    sync: Annotated[bool, typer.Option("--sync", help="Also remove documents no longer present under PATHS.")] = False,
    embed_model: EmbedModel = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Load, chunk and embed documents into a collection (unchanged files cost nothing).

    Supported: PDF, DOCX, HTML, Markdown, text, CSV/TSV, JSON/JSONL. A file that cannot be read is
    reported on stderr and skipped; the exit code is 1 when any file failed.
    """
    op = _outpost(ctx, embed_model=embed_model)
    with progress_bars(not quiet) as progress:
        report = op.ingest(*paths, collection=collection, sync=sync, progress=progress)
    print_report(report)
    if not report.ok:
        raise typer.Exit(1)


def search_cmd(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="What to look for.")],
    collection: Collection = DEFAULT_COLLECTION,
    k: K = None,
    mode: ModeOpt = "hybrid",
    json_out: Json = False,
    embed_model: EmbedModel = None,
) -> None:
    """Show the chunks that best match a query (no LLM involved)."""
    hits = _outpost(ctx, embed_model=embed_model).search(query, collection, k, _mode(mode))
    if json_out:
        print_json({"query": query, "collection": collection, "mode": mode, "results": [_hit_json(h) for h in hits]})
        return
    for rank, hit in enumerate(hits, start=1):
        page = f" p.{hit.chunk.page}" if hit.chunk.page is not None else ""
        out.print(f"[{rank}] {hit.chunk.doc_key}{page}  score={hit.score:.4f}  {hit.chunk.heading}")
        out.print(f"    {hit.chunk.text[:300]}")


def ask_cmd(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="The question to answer from the collection.")],
    collection: Collection = DEFAULT_COLLECTION,
    k: K = None,
    mode: ModeOpt = "hybrid",
    model: Annotated[Optional[str], setting_option("llm_model", "--model", "-m")] = None,
    temperature: Annotated[Optional[float], setting_option("temperature")] = None,
    max_tokens: Annotated[Optional[int], setting_option("max_tokens", help="Most tokens in the answer")] = None,
    ctx_tokens: Annotated[Optional[int], setting_option("n_ctx", "--ctx")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Sampling seed, for repeatable answers.")] = None,
    extractive: Annotated[
        bool, typer.Option("--extractive", help="Answer with the best source sentences alone, no LLM.")
    ] = False,
    check: Annotated[Optional[bool], setting_option("grounding", "--check/--no-check")] = None,
    remote: Annotated[
        bool, typer.Option("--remote", help="Ask the configured remote model, if the collection's label allows.")
    ] = False,
    json_out: Json = False,
    embed_model: EmbedModel = None,
) -> None:
    """Answer a question from a collection with the local LLM, streaming, then its evidence and sources.

    Each sentence of the answer is checked against the sources it cites; unsupported ones are marked, and
    an answer with none supported is replaced by what the sources say. With --extractive (or when no chat
    model can load) the answer is the best source sentences themselves.
    """
    op = _outpost(ctx, embed_model=embed_model, n_ctx=ctx_tokens)
    stream = op.ask(
        question,
        collection,
        stream=True,
        k=k,
        mode=_mode(mode),
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        seed=seed,
        extractive=extractive,
        check=check,
        remote=remote,
    )
    if json_out:
        print_json(_answer_json(stream.result()))
        return
    for piece in stream:
        out.print(piece, end="")
    out.print()
    _print_grounding(stream.result())
    _print_sources(stream.result())
    _print_route(stream.result(), remote)
    err.print(
        f"answer id {stream.result().id[:12]} — rate it: outpost feedback vote {stream.result().id[:12]} up|down "
        "[--source N:up|down]"
    )


collections_app = typer.Typer(help="List collections; `label` sets a collection's sensitivity label.")


@collections_app.callback(invoke_without_command=True)
@guarded
def collections_cmd(ctx: typer.Context, json_out: Json = False) -> None:
    """List collections: documents, chunks, size on disk, version, embedding model and sensitivity label."""
    if ctx.invoked_subcommand is not None:
        return
    op = _outpost(ctx)
    infos = op.collections()
    labels = {info.name: op.label(info.name) for info in infos}
    if json_out:
        print_json([{**asdict(info), "label": labels[info.name]} for info in infos])
        return
    table = Table("name", "version", "documents", "chunks", "size", "embedding model", "label")
    for info in infos:
        model = info.embedding.name.rsplit("/", 1)[-1] if info.embedding else "-"  # room for the label column
        table.add_row(
            info.name,
            str(info.version),
            str(info.documents),
            str(info.chunks),
            f"{info.bytes_on_disk / 1e6:.1f} MB",
            model,
            labels[info.name],
        )
    out.print(table if infos else "No collections yet: run `outpost ingest PATH --collection NAME`.")


@collections_app.command("label")
@guarded
def label_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The collection.")],
    label: Annotated[str, typer.Argument(help="private (never leaves), internal (trusted remotes), public.")],
) -> None:
    """Set a collection's sensitivity label: what the routing policy may send to a remote model."""
    out.print(f"{name}: {_outpost(ctx).label(name, label)}")


def sample_folder() -> Path:
    return Path(str(files("outpost") / "data" / "sample"))


def quickstart_cmd(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="Question to ask the sample collection.")] = QUICKSTART_QUESTION,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
) -> None:
    """Ingest the bundled sample documents into `quickstart` and ask them a question, offline."""
    op = _outpost(ctx)
    out.print(f"Ingesting the sample documents from {sample_folder()} ...")
    with progress_bars() as progress:
        report = op.ingest(sample_folder(), collection="quickstart", sync=True, progress=progress)
    print_report(report)
    out.print(f"\nQ: {question}\nA: ", end="")
    stream = op.ask(question, "quickstart", stream=True, seed=seed)
    for piece in stream:
        out.print(piece, end="")
    out.print()
    _print_grounding(stream.result())
    _print_sources(stream.result())
    out.print('\nNext: outpost ingest ~/docs --collection mydocs && outpost ask "..." --collection mydocs')


def register(app: typer.Typer) -> None:
    commands: list[tuple[str, Callable[..., None]]] = [
        ("quickstart", quickstart_cmd),
        ("ingest", ingest_cmd),
        ("ask", ask_cmd),
        ("search", search_cmd),
    ]
    for name, fn in commands:
        app.command(name)(guarded(fn))
    app.add_typer(collections_app, name="collections")
