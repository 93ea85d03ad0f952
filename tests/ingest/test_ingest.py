"""Ingest end to end on real files with the real embedder and a real SQLite store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from outpost import Outpost
from outpost.errors import ConfigError, ModelMismatchError
from outpost.ingest import Chunker, discover, ingest
from outpost.store import Store


def _store(home: Path, name: str = "docs") -> Store:
    return Store.open(home / "collections", name, create=True)


def _chunker(embedder) -> Chunker:  # type: ignore[no-untyped-def]
    return Chunker(embedder.count_tokens, 200, 30, embedder.identity.name)


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.md").write_text("# Alpha\n\nThe alpha project ships in March.\n\n## Risks\n\nBudget overrun.\n")
    (root / "b.txt").write_text("Beta notes.\n\nThe beta team meets on Tuesdays.\n")
    (root / "sub" / "c.csv").write_text("name,role\nAda,engineer\nGrace,admiral\n")
    return root


def test_reingest_of_an_unchanged_tree_embeds_nothing_and_keeps_the_version(  # type: ignore[no-untyped-def]
    tmp_path, home, counting_embedder
) -> None:
    root = _tree(tmp_path / "docs")
    store = _store(home)
    first = ingest(store, discover([root]), counting_embedder, _chunker(counting_embedder))
    assert first.version == 1 and sorted(first.added) == ["a.md", "b.txt", "sub/c.csv"]
    assert counting_embedder.embedded == first.chunks_embedded > 0

    counting_embedder.embedded = 0
    again = ingest(store, discover([root]), counting_embedder, _chunker(counting_embedder))
    assert counting_embedder.embedded == 0
    assert again.version == 1 and again.unchanged == 3 and not again.added and not again.updated


def test_sync_updates_changed_documents_and_removes_vanished_ones(tmp_path, home, counting_embedder) -> None:  # type: ignore[no-untyped-def]
    root = _tree(tmp_path / "docs")
    store = _store(home)
    ingest(store, discover([root]), counting_embedder, _chunker(counting_embedder))
    before = {c for c in store.chunk_positions(["a.md"])}

    (root / "a.md").write_text("# Alpha\n\nThe alpha project ships in March.\n\n## Risks\n\nScope creep.\n")
    (root / "b.txt").unlink()
    counting_embedder.embedded = 0
    report = ingest(store, discover([root]), counting_embedder, _chunker(counting_embedder), sync=True)

    assert report.updated == ["a.md"] and report.removed == ["b.txt"] and report.version == 2
    assert counting_embedder.embedded == 1  # only the changed section is embedded again
    after = set(store.chunk_positions(["a.md"]))
    assert len(before & after) == 1  # the unchanged section kept its chunk (and vector)
    assert set(store.document_hashes()) == {"a.md", "sub/c.csv"}
    assert store.chunk_ids(["b.txt"]) == []
    assert store.bm25("scope creep", 5) and not store.bm25("overrun", 5) and not store.bm25("tuesdays", 5)


def test_without_sync_vanished_documents_stay(tmp_path, home, counting_embedder) -> None:  # type: ignore[no-untyped-def]
    root = _tree(tmp_path / "docs")
    store = _store(home)
    ingest(store, discover([root]), counting_embedder, _chunker(counting_embedder))
    (root / "b.txt").unlink()
    report = ingest(store, discover([root]), counting_embedder, _chunker(counting_embedder))
    assert report.removed == [] and "b.txt" in store.document_hashes()


def test_broken_files_are_reported_and_the_rest_is_ingested(tmp_path, home, counting_embedder) -> None:  # type: ignore[no-untyped-def]
    root = _tree(tmp_path / "docs")
    (root / "broken.pdf").write_bytes(b"%PDF-1.7\n garbage without objects")
    (root / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "bad.json").write_text("{not json")
    report = ingest(_store(home), discover([root]), counting_embedder, _chunker(counting_embedder))
    failed = dict(report.failures)
    assert set(failed) == {"broken.pdf", "picture.png", "bad.json"}
    assert "unsupported" in failed["picture.png"]
    assert sorted(report.added) == ["a.md", "b.txt", "sub/c.csv"]
    assert not report.ok


def test_a_file_that_turns_corrupt_keeps_its_previous_version(tmp_path, home, counting_embedder) -> None:  # type: ignore[no-untyped-def]
    root = _tree(tmp_path / "docs")
    (root / "d.json").write_text('{"policy": "Remote work needs approval."}')
    store = _store(home)
    ingest(store, discover([root]), counting_embedder, _chunker(counting_embedder))
    (root / "d.json").write_text("{corrupt")
    report = ingest(store, discover([root]), counting_embedder, _chunker(counting_embedder), sync=True)
    assert [k for k, _ in report.failures] == ["d.json"]
    assert "d.json" in store.document_hashes() and store.bm25("remote approval", 3)


def test_another_embedding_model_is_refused_with_a_clear_message(tmp_path, home, embedder) -> None:  # type: ignore[no-untyped-def]
    root = _tree(tmp_path / "docs")
    Outpost().ingest(root, collection="docs")
    # A real, different model folder: the same architecture copied under another name and with other weights.
    other = tmp_path / "other-minilm"
    shutil.copytree(embedder.folder, other)
    with (other / "model.safetensors").open("ab") as fh:
        fh.write(b" ")
    op = Outpost(embed_model=str(other))
    with pytest.raises(ModelMismatchError, match="was embedded with sentence-transformers/all-MiniLM-L6-v2"):
        op.ingest(root, collection="docs")
    with pytest.raises(ModelMismatchError):
        op.search("alpha", collection="docs")


def test_two_files_with_the_same_key_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    (tmp_path / "x" / "n.txt").write_text("one")
    (tmp_path / "y" / "n.txt").write_text("two")
    with pytest.raises(ConfigError, match="same document key"):
        discover([tmp_path / "x", tmp_path / "y"])


def test_keys_are_relative_posix_paths_and_hidden_files_are_skipped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = _tree(tmp_path / "docs")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")
    (root / ".DS_Store").write_bytes(b"\0")
    assert sorted(f.key for f in discover([root])) == ["a.md", "b.txt", "sub/c.csv"]
    assert [f.key for f in discover([root / "sub" / "c.csv"])] == ["c.csv"]
