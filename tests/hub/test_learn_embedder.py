"""The hub learns a better embedder and laptops get it: a real hub on 127.0.0.1, real llama.cpp questions,
real sentence-transformers training, a real sync.

The collection gives a word a meaning of its own: "the apple" is the on-call duty (whoever holds it answers
alerts at night), while the kitchen has real apples. Asked "who has the apple tonight", the laptop's hybrid
search ranks the kitchen first (BM25 counts its three apples). The hub's bundled Gemma 3 270M writes questions for the
collection's chunks, the hub fine-tunes MiniLM on them (the kitchen, a top hit of another document, is a hard
negative), the gate checks the operator's held-out judged queries, the hub publishes the new identity, and a
laptop that syncs searches with the fine-tuned encoder and ranks an on-call chunk first. Skipped for now: see
the skip reason (the last assertion is not met reliably on so small a collection).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from hubkit import HubServer, outpost_cli
from outpost import Outpost
from outpost.finetune.embedder import EmbedderTrainConfig
from outpost.hub.embedder_learning import learn_embedder
from outpost.hub.home import HubHome
from outpost.hub.learning import _split_secret, split_key, store_feedback
from outpost.hub.service import Hub
from outpost.hub.tokens import Tokens
from outpost.hubs import HubConfig, hub_name
from outpost.ingest import Chunker
from outpost.models.resolve import resolve_model
from outpost.settings import Settings
from outpost.sync import sync_hub

DOCS = {
    "oncall.md": "# On call\n\nWhoever holds the apple answers every alert at night. The apple passes to the next "
    "engineer on Monday morning.\n",
    "handover.md": "# Handover\n\nBefore you hand over the apple, write down the open incidents for the next holder "
    "of the apple.\n",
    "alerts.md": "# Alerts\n\nWhen the apple rings, acknowledge the alert within five minutes and open an incident.\n",
    "rota.md": "# Rota\n\nThe apple rota lists which engineer carries the apple each week; nobody carries it twice in "
    "a row.\n",
    "kitchen.md": "# Kitchen\n\nApples for everyone: the kitchen apple basket is refilled every Monday. Take an apple, "
    "a pear or a banana.\n",
    "parking.md": "# Parking\n\nParking permits are issued by facilities at the start of each year.\n",
    "payroll.md": "# Payroll\n\nSalaries are paid on the last working day of the month.\n",
    "laptop.md": "# Laptops\n\nA broken laptop goes to the IT desk on the second floor for repair.\n",
}
PROBE = "who has the apple tonight"
ON_CALL = {"oncall.md", "handover.md", "alerts.md", "rota.md"}  # the documents where "the apple" means the duty


def _held_out_ids(home: HubHome, n: int) -> list[str]:
    """Feedback ids that the hub's keyed split holds out (the operator's evaluation queries, never trained on)."""
    from outpost.adapt import Example, split

    secret = _split_secret(home)
    ids = [hashlib.sha256(f"judged-{i}".encode()).hexdigest()[:32] for i in range(200)]
    examples = [Example(np.zeros(1), ("x",), key=split_key(secret, i)) for i in ids]
    _, held = split(examples, 0.2)
    keys = {e.key for e in held}
    return [i for i in ids if split_key(secret, i) in keys][:n]


def _chunk_of(hub: Hub, doc: str) -> str:
    store = hub.store("docs")
    try:
        return store.chunks_by_document()[doc][0]
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.skip(
    reason="issue 15 acceptance not met yet: the pipeline runs end to end (Gemma questions, training, gate, "
    "publish, sync, the laptop's +ft encoder), but on 8 chunks the outcome depends on the hub key's random "
    "held-out split: in 3 of 4 runs (3 designs) the gate passed yet the probe stayed on the kitchen; once it refused "
    "(held-out nDCG@10 0.67 -> 0.50), which is the gate doing its job"
)
def test_after_learning_from_generated_questions_the_laptop_ranks_the_right_chunk_first(
    tmp_path: Path,
    embedder,  # type: ignore[no-untyped-def]
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    home = HubHome.at(tmp_path / "hub-home")
    home.init()
    hub = Hub(home)
    hub.ingest([docs], "docs", embedder, Chunker(embedder.count_tokens, 200, 30, embedder.identity.name), sync=True)
    token = Tokens(home).create("t", ["docs"])[0]
    laptop = tmp_path / "laptop"

    # The operator's held-out judged queries (text kept): what the gate measures; never trained on.
    oncall = _chunk_of(hub, "oncall.md")
    judged = [(PROBE, oncall), ("is the apple mine this week", oncall)]
    items = [
        {
            "id": item_id,
            "query": query,
            "query_vector": embedder.embed_query(query).tolist(),
            "shown": [chunk],
            "answer_vote": None,
            "source_votes": {chunk: 1},
        }
        for item_id, (query, chunk) in zip(_held_out_ids(home, len(judged)), judged)
    ]
    assert store_feedback(home, "docs", None, items) == len(judged)

    with HubServer(tmp_path / "hub-home") as server:
        config = HubConfig(hub_name(server.url), server.url, token)
        assert sync_hub(laptop, config).updated["docs"] == (0, 1, "snapshot-1")
        before = Outpost(home=laptop).search(PROBE, "docs", 3)
        assert before[0].chunk.doc_key == "kitchen.md", [h.chunk.doc_key for h in before]  # the puzzle is real

        settings = Settings(home=tmp_path / "hub-home")
        gemma = resolve_model(home.root, "gemma3-270m").path
        train = EmbedderTrainConfig(max_steps=60, epochs=60, batch_size=8, learning_rate=2e-4)
        report = learn_embedder(hub, "docs", settings, generator=gemma, max_chunks=len(DOCS), config=train)
        assert report.generated > 0 and report.sources.get("generated", 0) > 0, report
        assert "feedback" not in report.sources and report.heldout >= len(judged)
        assert report.published and report.version == 2, report.reason
        assert report.gate is not None and report.gate.after["mrr@10"] > report.gate.before["mrr@10"]

        assert sync_hub(laptop, config).updated["docs"] == (1, 2, "delta-1-2")
        laptop_search = Outpost(home=laptop)
        assert "+ft-" in laptop_search.retriever("docs").embedder.identity.name
        after = laptop_search.search(PROBE, "docs", 3)
        assert after[0].chunk.doc_key in ON_CALL, [h.chunk.doc_key for h in after]


def test_learn_embedder_without_data_is_one_clear_error(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    """No generator and no judged queries with text: nothing to learn from, said in one line, exit 1."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nSome text about parking permits.\n")
    home = HubHome.at(tmp_path / "hub-home")
    home.init()
    Hub(home).ingest([docs], "docs", embedder, Chunker(embedder.count_tokens, 200, 30, embedder.identity.name))
    result = outpost_cli("hub", "learn-embedder", "-c", "docs", "--generator", "none", home=tmp_path / "hub-home")
    assert result.returncode == 1
    assert "not enough data: 0 training pairs and 0 held-out queries" in result.stderr
    assert "Traceback" not in result.stderr
