"""`outpost eval`: measure retrieval (BM25, dense, hybrid) on a BEIR dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from outpost.app import Outpost
from outpost.cli.console import err, guarded, out, print_json, progress_bars

PUBLISHED = {  # BEIR / MTEB nDCG@10 reference figures, for context in the table
    "nfcorpus": {"bm25": 0.325, "dense": 0.315},
}


def eval_cmd(
    ctx: typer.Context,
    dataset: Annotated[Path, typer.Argument(help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv.")],
    split: Annotated[str, typer.Option(help="Which qrels split to evaluate.")] = "test",
    adapter_from: Annotated[
        Optional[str],
        typer.Option("--adapter-from", help="Train a query adapter on this split's judgements and report with it too."),
    ] = None,
    limit: Annotated[Optional[int], typer.Option(help="Evaluate only the first N judged queries.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """nDCG@10, recall@10/@100, MRR@10 and latency for BM25, dense and hybrid on a BEIR dataset."""
    from outpost.evaluate import run_eval

    op = Outpost(home=ctx.obj.get("home"))
    with progress_bars(not json_out) as progress:
        report = run_eval(
            op,
            dataset,
            split,
            adapter_from,
            limit,
            progress,
            on_mode=None if json_out else lambda m: err.print(f"evaluating {m} ..."),
        )
    if json_out:
        print_json(report)
        return
    out.print(
        f"{report.dataset} / {report.split}: {report.queries} queries, {report.documents} documents, "
        f"{report.chunks} chunks"
    )
    table = Table("retriever", "nDCG@10", "R@10", "R@100", "MRR@10", "p50 ms", "p99 ms", "published")
    # the published figures are for the test split
    published = PUBLISHED.get(report.dataset.lower(), {}) if report.split == "test" else {}
    for mode, m in report.results.items():
        ref = published.get(mode)
        table.add_row(
            mode,
            f"{m['ndcg@10']:.4f}",
            f"{m['recall@10']:.4f}",
            f"{m['recall@100']:.4f}",
            f"{m['mrr@10']:.4f}",
            f"{m['p50_ms']:.1f}",
            f"{m['p99_ms']:.1f}",
            f"{ref:.3f}" if ref else "",
        )
    out.print(table)
    if report.adapter:
        out.print(f"adapter: {report.adapter}")


def register(app: typer.Typer) -> None:
    app.command("eval")(guarded(eval_cmd))
