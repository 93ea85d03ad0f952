"""What an ingest leaves on disk (issue 12): the write-ahead log is folded in and truncated when the ingest ends,
so a collection's size right after ingest is its real size, not the store plus a WAL as large again."""

from __future__ import annotations

from pathlib import Path

from outpost.embed.sentence_transformers import SentenceTransformerEmbedder
from outpost.ingest import Chunker, discover, ingest
from outpost.store import Store


def test_ingest_ends_with_an_empty_wal(tmp_path: Path, sample_dir: Path, embedder: SentenceTransformerEmbedder) -> None:
    store = Store.open(tmp_path / "collections", "notes", create=True)
    chunker = Chunker(embedder.count_tokens, 200, 30, embedder.identity.name)
    report = ingest(store, discover([sample_dir]), embedder, chunker)
    assert report.version == 1
    wal = store.path.with_name(store.path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    assert store.info().chunks > 0  # the data is in the database file itself
    store.close()
