"""Core learning helpers (``outpost.learn``, ``outpost.metrics``) and the BEIR evaluation built on them.

The store's public reads feed both adapter training on the hub and ``outpost eval``; these tests pin
what they return against what was applied, the metrics against hand-computed values, and run a real
evaluation (real embedder, real store, a real adapter fit) on a small BEIR-format dataset.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from outpost import Outpost
from outpost.adapt import evaluate as adapter_metrics
from outpost.embed.quantize import dequantize, quantize
from outpost.evaluate import metrics_for, run_eval
from outpost.learn import collection_vectors, doc_chunks, qrels_examples
from outpost.metrics import ndcg_at_k, recall_at_k, reciprocal_rank
from outpost.records import Changeset, Chunk, EmbeddingIdentity
from outpost.store import Store

IDENTITY = EmbeddingIdentity("test-vectors", "0" * 64, 8, 256)


def test_metrics_against_hand_computed_values() -> None:
    assert reciprocal_rank(["a", "b", "c"], {"c", "z"}) == pytest.approx(1 / 3)
    assert reciprocal_rank(["a", "b", "c"], {"c"}, k=2) == 0.0  # beyond the cut-off counts nothing
    assert recall_at_k(["a", "b", "c"], {"a", "c", "z", "y"}, k=2) == 0.25
    assert recall_at_k(["a"], set()) == 0.0
    judged = {"a": 2, "b": 0, "c": 1}
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(["b", "a", "c"], judged) == pytest.approx((2 / math.log2(3) + 1 / math.log2(4)) / ideal)
    assert metrics_for(["b", "a", "c"], judged)["mrr@10"] == 0.5  # "b" is judged, but not relevant (grade 0)
    # the adapter's held-out gate scores MRR the same way: the positive ranks 2nd of 3 here
    ids, vectors = ["x", "y", "z"], np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]], dtype=np.float32)
    from outpost.adapt import Example

    held = [Example(np.array([1.0, 0.1], dtype=np.float32), ("y",))]
    assert adapter_metrics(None, held, ids, vectors)["mrr@10"] == 0.5


def test_store_reads_return_what_was_applied(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    floats = rng.normal(size=(5, 8)).astype(np.float32)
    q, scales = quantize(floats)
    keys = ["notes/a.md", "notes/a.md", "b.txt", "notes/a.md", "b.txt"]
    chunks = [Chunk(f"c{i}", key, i, f"text {i}") for i, key in enumerate(keys)]
    store = Store.open(tmp_path, "reads", create=True)
    store.apply(Changeset("reads", 0, chunks, q, scales, embedding=IDENTITY))
    ids, stored, stored_scales = store.vectors()
    assert ids == [f"c{i}" for i in range(5)] and stored.dtype == np.int8
    assert np.array_equal(stored, q) and np.allclose(stored_scales, scales)
    assert np.allclose(collection_vectors(store)[1], dequantize(q, scales))
    assert store.chunks_by_document() == {"notes/a.md": ["c0", "c1", "c3"], "b.txt": ["c2", "c4"]}
    assert doc_chunks(store)["a"] == ["c0", "c1", "c3"]  # a qrels id may name a key's stem
    assert store.known_chunk_ids(["c4", "nope", "c0"]) == {"c0", "c4"}
    store.close()


TOPICS = [
    ("volcano", "Magma rises through the crust and erupts as lava from the volcano's crater."),
    ("glacier", "Compacted snow turns to ice and the glacier creeps slowly down the mountain valley."),
    ("coral", "Coral reefs are built by tiny polyps that secrete calcium carbonate in warm shallow seas."),
    ("bread", "Yeast ferments the sugars in dough, releasing carbon dioxide so the loaf of bread rises."),
    ("chess", "In chess the knight moves in an L shape and can jump over other pieces on the board."),
    ("violin", "A violin has four strings tuned in fifths and is played with a horsehair bow."),
    ("tides", "The moon's gravity pulls on the oceans, producing two high tides roughly every day."),
    ("bees", "Honey bees communicate the direction of flowers to the hive with a waggle dance."),
    ("rust", "Iron rusts when it reacts with oxygen and water to form hydrated iron oxide."),
    ("comets", "A comet is a ball of ice and dust whose tail points away from the sun."),
    ("tea", "Green tea leaves are steamed soon after picking, which stops them from oxidising."),
    ("bridges", "Suspension bridges hang their deck from cables slung over tall towers."),
]
QUESTIONS = [  # one test question, then two training questions, per topic
    ("How does lava come out of a volcano?", "Why do volcanoes erupt?", "What comes out of a crater?"),
    ("How do glaciers move?", "What is a glacier made of?", "How does snow become glacial ice?"),
    ("Who builds coral reefs?", "Where do coral reefs grow?", "What are polyps?"),
    ("Why does bread dough rise?", "What does yeast do in baking?", "Where do the bubbles in a loaf come from?"),
    ("How does the knight move in chess?", "Which chess piece can jump?", "What is an L-shaped move?"),
    ("How many strings does a violin have?", "What is a violin bow made of?", "How is a violin tuned?"),
    ("What causes the tides?", "How often is high tide?", "What does the moon do to the sea?"),
    ("How do bees tell each other where flowers are?", "What is the waggle dance?", "How do bees talk?"),
    ("Why does iron rust?", "What is rust made of?", "What happens to iron in wet air?"),
    ("Why does a comet have a tail?", "What is a comet made of?", "Which way does a comet's tail point?"),
    ("How is green tea processed?", "Why is green tea steamed?", "What stops tea leaves from oxidising?"),
    ("How do suspension bridges hold up the road?", "What holds a bridge deck?", "Why do bridges have towers?"),
]


def _beir(folder: Path) -> Path:
    """A BEIR-format dataset: one document per topic, one test and two training questions per document."""
    (folder / "qrels").mkdir(parents=True)
    corpus = [{"_id": f"D{i}", "title": name, "text": text} for i, (name, text) in enumerate(TOPICS)]
    queries = [{"_id": f"Q{i}{s}", "text": QUESTIONS[i][s]} for i in range(len(TOPICS)) for s in (0, 1, 2)]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in corpus) + "\n")
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    for split, asked in (("test", (0,)), ("train", (1, 2))):
        rows = "".join(f"Q{i}{s}\tD{i}\t1\n" for i in range(len(TOPICS)) for s in asked)
        (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return folder


@pytest.mark.slow  # the real embedder, and an adapter trained with torch
def test_eval_on_a_small_beir_set_with_an_adapter_from_another_split(home: Path, tmp_path: Path) -> None:
    op = Outpost(home=home)
    folder = _beir(tmp_path / "tiny")
    report = run_eval(op, folder, "test")
    assert (report.queries, report.documents) == (len(TOPICS), len(TOPICS))
    assert report.results["dense"]["mrr@10"] > 0.8 and report.results["hybrid"]["ndcg@10"] > 0.8
    assert report.results["bm25"]["recall@100"] <= 1.0 and report.adapter is None
    store = op.store(f"eval-{folder.name}")
    train = {f"Q{i}1": {f"D{i}": 1} for i in range(len(TOPICS))}
    texts = {f"Q{i}1": QUESTIONS[i][1] for i in range(len(TOPICS))}
    examples = qrels_examples(store, op.embedder(), train, texts, negatives=3)
    by_doc = store.chunks_by_document()
    assert len(examples) == len(TOPICS)
    assert all(ex.positives == tuple(by_doc[f"D{ex.key[1:-1]}"]) for ex in examples)  # its document's chunks
    assert all(not set(ex.negatives) & set(ex.positives) and len(ex.negatives) == 3 for ex in examples)
    adapted = run_eval(op, folder, "test", adapter_from="train")  # 24 judged training queries
    assert adapted.adapter is not None and adapted.adapter["trained_on"] == "train"
    assert adapted.adapter["examples"] + adapted.adapter["heldout"] == 2 * len(TOPICS)
    assert {"dense+adapter", "hybrid+adapter"} <= set(adapted.results)
    for mode in ("bm25", "dense", "hybrid"):  # a rerun embeds nothing new and ranks the same
        assert adapted.results[mode]["ndcg@10"] == pytest.approx(report.results[mode]["ndcg@10"])
    assert adapted.results["dense+adapter"]["mrr@10"] > 0.5  # a 12-document set: the adapter must not wreck it
