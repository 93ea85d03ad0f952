"""Fine-tuning the embedder (``outpost.finetune.embedder``): real MiniLM, real sentence-transformers training.

A tiny collection where a made-up word carries a meaning only the collection defines ("zorbex" is the name
staff use for the expense report): the base model has never seen it, so the question ranks the wrong chunk
first; a few dozen steps on pairs that use the word move the right chunk up. The gate is checked both ways.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from outpost.embed.sentence_transformers import SentenceTransformerEmbedder
from outpost.errors import ConfigError
from outpost.finetune.embedder import (
    EmbedderTrainConfig,
    HybridIndex,
    Judged,
    Pair,
    Passage,
    candidate_index,
    gate,
    judged_pairs,
    mine_pairs,
    sample_passages,
    train_embedder,
)

pytestmark = pytest.mark.slow  # loads MiniLM and trains it (~20-60 s on two busy cores)

PASSAGES = [
    Passage("c-expense", "expenses.md", "Reimbursing travel costs: fill in the form with receipts within 30 days."),
    Passage("c-zorbex", "zorbex.md", "Zorbex is due on Friday. Submit your zorbex to finance before noon."),
    Passage("c-holiday", "holiday.md", "Annual leave: request holidays in the calendar two weeks ahead."),
    Passage("c-laptop", "laptop.md", "A broken laptop goes to the IT desk on the second floor for repair."),
    Passage("c-parking", "parking.md", "Parking permits are issued by facilities at the start of each year."),
    Passage("c-payroll", "payroll.md", "Salaries are paid on the last working day of the month."),
]
TEXTS = {p.id: p.text for p in PASSAGES}
QUESTION = "How do I get my travel costs paid back?"
# what the generator would write for the zorbex chunk (questions in the collection's own words)
TRAIN = [
    "when is the zorbex due",
    "where do I submit my zorbex",
    "zorbex deadline",
    "who receives the zorbex",
    "how do I hand in a zorbex",
    "zorbex for travel costs",
    "getting travel costs paid back with a zorbex",
    "claiming money back for a trip",
]


def _dense(model: str | Path) -> HybridIndex:
    """Dense-only search over the passages, embedded by sentence-transformers with ``model``."""
    return candidate_index(SentenceTransformerEmbedder(str(model)), PASSAGES, None)


def test_training_moves_the_right_chunk_up(tmp_path: Path) -> None:
    """Teach that reimbursement questions mean the zorbex chunk: it must outrank the expense chunk after."""
    before = _dense("all-MiniLM-L6-v2")
    pairs = [Pair(q, "c-zorbex", ("c-expense",)) for q in TRAIN]
    config = EmbedderTrainConfig(
        max_steps=30, epochs=30, batch_size=4, max_seq_length=64, learning_rate=1e-4, freeze_embeddings=True
    )
    trained = train_embedder("all-MiniLM-L6-v2", pairs, TEXTS, tmp_path / "model", config)
    assert (tmp_path / "model" / "config.json").is_file() and trained.steps == 30
    after = _dense(trained.path)
    probe = "money back for train tickets"  # not a training question
    rank_before = before.search(probe, 6).index("c-zorbex")
    rank_after = after.search(probe, 6).index("c-zorbex")
    assert rank_after < rank_before, (rank_before, rank_after)
    assert after.search(probe, 1) == ["c-zorbex"]
    assert np.mean(trained.losses[-5:]) < np.mean(trained.losses[:5])
    # the gate agrees on held-out judgements about the same meaning, and refuses the model the other way round
    held = [Judged(probe, {"c-zorbex": 1}), Judged("refund my hotel bill", {"c-zorbex": 1})]
    assert gate(before.search, after.search, held).improved
    assert not gate(after.search, before.search, held).improved


def test_gate_refuses_a_model_that_does_not_help() -> None:
    """The same model before and after: nothing improves, so nothing is shipped (ties fail)."""
    index = _dense("all-MiniLM-L6-v2")
    held = [Judged("when are salaries paid", {"c-payroll": 1}), Judged("fix my laptop", {"c-laptop": 1})]
    result = gate(index.search, index.search, held)
    assert result.before == result.after and not result.improved
    assert not gate(index.search, index.search, []).improved  # no held-out queries: no evidence, no ship


def test_consistency_filter_and_hard_negatives() -> None:
    """A question that does not find its own chunk is dropped; negatives never come from its own document."""
    index = _dense("all-MiniLM-L6-v2")
    doc = {p.id: p.doc for p in PASSAGES}
    doc["c-zorbex-2"] = "zorbex.md"
    mined = mine_pairs(
        {"c-laptop": "my laptop is broken, where do I take it", "c-parking": "when are salaries paid"},
        doc,
        index.search,
        k=1,
        negatives=2,
    )
    assert [p.positive for p in mined.pairs] == ["c-laptop"] and mined.inconsistent == 1
    assert all(doc[n] != "laptop.md" for n in mined.pairs[0].negatives) and len(mined.pairs[0].negatives) == 2


def test_no_negative_is_a_positive_of_its_batch() -> None:
    """A chunk that is one pair's positive is never another pair's negative column: MNRL would list it twice among
    the first pair's candidates (as its answer and as a wrong one). The other pair still meets it in-batch."""
    from random import Random

    from outpost.finetune.embedder import _columns

    texts = {"a": "text a", "b": "text b", "c": "text c"}
    batch = [Pair("qa", "a", ("b", "c")), Pair("qb", "b", ("a",))]
    columns = _columns(batch, texts, 1, Random(0), list(texts))
    assert columns[:2] == [["qa", "qb"], ["text a", "text b"]]
    assert columns[2] == ["text c", "text c"]  # a's hard negative b skipped for c; b's a replaced by the spare c
    only_positives = _columns(batch, {"a": "text a", "b": "text b"}, 1, Random(0), ["a", "b"])
    assert len(only_positives) == 2  # no chunk left to be a negative: in-batch negatives alone


def test_no_pairs_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No training pairs"):
        train_embedder("all-MiniLM-L6-v2", [Pair("q", "missing-chunk")], TEXTS, tmp_path / "m")


@pytest.mark.parametrize("budget", [1, 3, 7])
def test_sampling_spreads_over_documents(budget: int) -> None:
    passages = [Passage(f"{d}-{i}", d, "text") for d in "abc" for i in range(3)]
    picked = sample_passages(passages, budget)
    assert len(picked) == budget
    assert len({p.doc for p in picked}) == min(budget, 3)
    assert judged_pairs([("q", ["x", "y", "z"], ["n"])], per_query=2) == [
        Pair("q", "x", ("n",), "qrels", frozenset({"y", "z"})),
        Pair("q", "y", ("n",), "qrels", frozenset({"x", "z"})),
    ]


def test_a_batch_never_teaches_that_a_judged_answer_is_wrong() -> None:
    """MNRL takes every other positive of a batch as a wrong answer: one query twice, or a positive judged
    relevant to another query of the batch, would teach that right answers are wrong. Such pairs wait."""
    from random import Random

    from outpost.finetune.embedder import _batches

    pairs = judged_pairs([("q1", ["a", "b", "c"], []), ("q2", ["c", "d"], []), ("q3", ["e"], [])], per_query=3)
    pairs += [Pair("q4", "f", (), "generated"), Pair("q5", "f", (), "generated")]
    for seed in range(20):
        batches = _batches(pairs, 8, Random(seed))
        assert sorted(p.positive + p.query for b in batches for p in b) == sorted(p.positive + p.query for p in pairs)
        for batch in batches:
            assert len({p.query for p in batch}) == len(batch) and len({p.positive for p in batch}) == len(batch)
            positives = {p.positive for p in batch}
            assert all(not (p.relevant & positives) for p in batch), batch
        assert len(batches) >= 3  # q1's three pairs can never share a batch


def test_store_passages_are_what_the_stored_vectors_embed(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    """Training and the gate read chunks as the ingest embedded them: heading path (title first) + body. Since
    store migration 4 a heading equal to its document's title is stored as NULL; reading the raw column dropped the
    title, and a stored vector matched its passage only to cosine 0.85 (NFCorpus)."""
    from outpost.app import Outpost
    from outpost.finetune.embedder import store_passages
    from outpost.learn import collection_vectors

    (tmp_path / "docs").mkdir()
    body = "Zorbex forms are due on Friday and go to the finance office before noon."
    (tmp_path / "docs" / "zorbex.md").write_text(f"# Zorbex handbook\n\n{body}\n")
    op = Outpost(home=tmp_path / "home", embed_backend="torch")
    op.ingest(tmp_path / "docs", collection="notes")
    store = op.store("notes")
    passages = store_passages(store)
    assert [p.text for p in passages] == [f"Zorbex handbook\n{body}"]
    ids, vectors = collection_vectors(store)
    fresh = embedder.embed([passages[0].text])[0]
    stored = vectors[ids.index(passages[0].id)]
    assert float(fresh @ stored / np.linalg.norm(stored)) > 0.99


def test_the_generator_judges_which_chunk_a_question_fits(tmp_path: Path) -> None:
    """``judge_pairs`` with the real bundled SmolLM2 as judge: a question kept when its own chunk is the likeliest
    source among the index's candidates, dropped when another document's chunk is; only candidates clearly less
    likely become negatives; the scores are cached, so a second call runs no model."""
    from outpost.finetune.embedder import judge_pairs
    from outpost.llm import resolve_gguf

    index = _dense("all-MiniLM-L6-v2")
    doc = {p.id: p.doc for p in PASSAGES}
    questions = {
        "c-laptop": "Where do I take a broken laptop for repair?",
        "c-parking": "On which day of the month are salaries paid?",  # the payroll chunk's question, not parking's
    }
    cache = tmp_path / "judged.jsonl"
    judged = judge_pairs(questions, TEXTS, doc, index.search, resolve_gguf("smollm2"), candidates=3, cache=cache)
    assert [p.positive for p in judged.pairs] == ["c-laptop"] and judged.inconsistent == 1
    laptop = judged.pairs[0]
    assert laptop.negatives and all(doc[n] != "laptop.md" for n in laptop.negatives)
    lines = cache.read_text().splitlines()
    assert len(lines) == 2 * 4  # each question against its own chunk and 3 candidates

    with pytest.raises(ConfigError, match="No GGUF file"):
        judge_pairs(questions, TEXTS, doc, index.search, tmp_path / "missing.gguf", cache=cache)
    again = judge_pairs(
        questions, TEXTS, doc, index.search, resolve_gguf("smollm2"), candidates=3, margin=1e9, cache=cache
    )
    assert cache.read_text().splitlines() == lines  # nothing scored again
    assert [p.positive for p in again.pairs] == ["c-laptop"] and again.pairs[0].negatives == ()  # none 1e9 nats worse
