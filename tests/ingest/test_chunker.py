"""Chunking with the real MiniLM tokenizer: bounds, overlap, structure, stable ids."""

from __future__ import annotations

from conftest import make_document
from outpost.ingest.chunker import Chunker, chunk_id, heading_path, split_sentences
from outpost.records import Block, Document

LONG = " ".join(f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(120))


def _chunker(embedder, max_tokens: int = 64, overlap: int = 12) -> Chunker:  # type: ignore[no-untyped-def]
    return Chunker(embedder.count_tokens, max_tokens, overlap, "minilm")


def test_chunks_respect_the_token_bound_measured_by_the_real_tokenizer(embedder) -> None:  # type: ignore[no-untyped-def]
    chunks = _chunker(embedder).chunk(make_document("a.txt", LONG, title="Doc"))
    assert len(chunks) > 5
    for chunk in chunks:
        embedded = f"{chunk.heading}\n{chunk.text}"
        assert embedder.count_tokens([embedded])[0] <= 64 + 2, chunk.text
    # nothing lost: every sentence appears in some chunk
    text = " ".join(c.text for c in chunks)
    for i in range(120):
        assert f"Sentence number {i} " in text


def test_consecutive_chunks_overlap(embedder) -> None:  # type: ignore[no-untyped-def]
    chunks = _chunker(embedder).chunk(make_document("a.txt", LONG))
    for prev, nxt in zip(chunks, chunks[1:]):
        last_sentence = split_sentences(prev.text)[-1]
        assert nxt.text.startswith(last_sentence)


def test_a_sentence_longer_than_the_budget_is_cut_at_words(embedder) -> None:  # type: ignore[no-untyped-def]
    words = " ".join(f"word{i}" for i in range(400))
    chunks = _chunker(embedder).chunk(make_document("a.txt", words))
    assert len(chunks) > 3
    assert all(embedder.count_tokens([c.text])[0] <= 64 for c in chunks)
    assert " ".join(c.text for c in chunks).count("word399") == 1


def test_chunks_never_span_sections_or_pages(embedder) -> None:  # type: ignore[no-untyped-def]
    doc = Document(
        "h.pdf",
        "x",
        "Guide",
        "pdf",
        (
            Block("Page one text.", 1, ("Intro",)),
            Block("Page two text.", 2, ("Intro",)),
            Block("Other section.", 2, ("Details",)),
        ),
    )
    chunks = _chunker(embedder).chunk(doc)
    assert [(c.page, c.heading, c.text) for c in chunks] == [
        (1, "Guide › Intro", "Page one text."),
        (2, "Guide › Intro", "Page two text."),
        (2, "Guide › Details", "Other section."),
    ]


def test_chunk_ids_are_stable_and_depend_on_key_text_and_chunker(embedder) -> None:  # type: ignore[no-untyped-def]
    doc = make_document("a.txt", LONG, title="Doc")
    first = [c.id for c in _chunker(embedder).chunk(doc)]
    again = [c.id for c in _chunker(embedder).chunk(doc)]
    assert first == again
    assert len(set(first)) == len(first)
    moved = [c.id for c in _chunker(embedder).chunk(make_document("b.txt", LONG, title="Doc"))]
    assert not set(first) & set(moved)  # same text, other document: other ids
    other = [c.id for c in _chunker(embedder, max_tokens=80).chunk(doc)]
    assert not set(first) & set(other)  # another chunker configuration: other ids
    assert chunk_id("c", "k", "t") == chunk_id("c", "k", "t") != chunk_id("c", "k", "t", 1)


def test_repeated_text_in_one_document_gets_distinct_ids(embedder) -> None:  # type: ignore[no-untyped-def]
    doc = Document(
        "r.md",
        "x",
        "",
        "markdown",
        (Block("Same.", None, ("A",)), Block("Other.", None, ("B",)), Block("Same.", None, ("A",))),
    )
    ids = [c.id for c in _chunker(embedder).chunk(doc)]
    assert len(ids) == len(set(ids)) == 3


def test_heading_path_skips_repeats_and_blanks() -> None:
    assert heading_path("Handbook", ("Handbook", "", "Leave")) == "Handbook › Leave"
    assert heading_path("", ()) == ""
