"""Hybrid retrieval with the real embedder: each retriever covers the other's blind spot."""

from __future__ import annotations

from pathlib import Path

import pytest

from outpost.ingest import Chunker, SourceFile, ingest
from outpost.retrieve import Retriever, rrf
from outpost.store import Store

FILLER = [
    "Error messages from the build server are collected in the dashboard every night.",
    "When the deployment fails, the pipeline reports a numbered error and rolls back.",
    "Support engineers triage error reports by severity and product area.",
    "The status page lists incidents and the error rates of each service.",
    "A failing health check raises an alert with the error code of the component.",
    "Error budgets are reviewed monthly by the reliability team.",
    "Our coffee machine on the third floor is cleaned every Friday.",
    "The canteen serves vegetarian lunch options every day.",
    "Parking permits are renewed in January at the reception desk.",
    "The quarterly town hall takes place in the large auditorium.",
    # near-identical identifiers: the kind of string dense embeddings blur together
    "Code QX-4417 means the billing service lost its lease; restart the billing worker.",
    "Code QX-4741 means the ledger cache is cold; warm it before the nightly run.",
    "Code QX-7441 means the ledger queue is full; drain the queue first.",
    "Code QX-1447 means the ledger database is read-only during backups.",
]
# The identifier appears once, in passing, inside a paragraph about something else: dense search
# embeds the paragraph's meaning, so only an exact-term retriever reliably finds it.
EXACT = (
    "The move to the new Rotterdam office happens over the last weekend of March. Movers pack each "
    "desk on Friday afternoon, so please clear personal items before lunch. The large printer, asset "
    "tag QX-4471, travels separately and will be back in service on Tuesday. Parking changes too."
)
PARAPHRASE = "Employees may work from home up to three days each week with their manager's agreement."


@pytest.fixture
def retriever(tmp_path: Path, home: Path, embedder) -> Retriever:  # type: ignore[no-untyped-def]
    root = tmp_path / "docs"
    root.mkdir()
    for i, text in enumerate([*FILLER, EXACT, PARAPHRASE]):
        (root / f"note{i:02d}.txt").write_text(text)
    files = [SourceFile(p, p.name) for p in sorted(root.iterdir())]
    store = Store.open(home / "collections", "r", create=True)
    ingest(store, files, embedder, Chunker(embedder.count_tokens, 200, 30, "minilm"))
    return Retriever(store, embedder)


def _docs(hits) -> list[str]:  # type: ignore[no-untyped-def]
    return [h.chunk.doc_key for h in hits]


def test_hybrid_finds_an_exact_term_that_dense_search_misses(retriever: Retriever) -> None:
    query, target = "QX-4471", "note14.txt"
    assert _docs(retriever.search(query, 3, "bm25"))[0] == target
    assert target not in _docs(retriever.search(query, 3, "dense"))
    assert target in _docs(retriever.search(query, 3, "hybrid"))


def test_hybrid_finds_a_paraphrase_that_bm25_misses(retriever: Retriever) -> None:
    query, target = "How often can staff telecommute?", "note15.txt"
    assert target not in _docs(retriever.search(query, 3, "bm25"))
    assert _docs(retriever.search(query, 3, "dense"))[0] == target
    assert target in _docs(retriever.search(query, 3, "hybrid"))


def test_hits_carry_ranks_from_both_retrievers(retriever: Retriever) -> None:
    hits = retriever.search("billing service lease", 3, "hybrid")
    top = hits[0]
    assert top.chunk.doc_key == "note10.txt" and top.bm25_rank == 1 and top.dense_rank is not None
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_rrf_weights_and_ties() -> None:
    fused = rrf([([1, 2, 3], 1.0), ([3, 2, 4], 1.0)], k=60)
    assert [key for key, _ in fused][:2] == [2, 3] or [key for key, _ in fused][:2] == [3, 2]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 62) or fused[0][1] == pytest.approx(1 / 63 + 1 / 61)
    only_dense = rrf([([1, 2], 0.0), ([2, 1], 1.0)], k=60)
    assert [key for key, _ in only_dense] == [2, 1]
