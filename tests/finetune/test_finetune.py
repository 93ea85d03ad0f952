"""LoRA fine-tuning: pairs, the GGUF LoRA format, and the whole loop on the real bundled model.

The slow tests use nothing fake: Transformers + PEFT train on the bundled SmolLM2 GGUF (dequantised),
llama.cpp loads the adapter, the hub is the real app under uvicorn on 127.0.0.1, and the laptop pulls
the adapter with the real `outpost models pull hub://...` and answers through its Modelfile.
The facts are made up, so the base model cannot know them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hubkit import HubServer, outpost_cli
from outpost.errors import ConfigError
from outpost.finetune.pairs import QAPair, load_pairs, split_pairs
from outpost.hub.finetune import _best_sentence, feedback_pairs, generated_pairs
from outpost.hub.home import HubHome
from outpost.hub.learning import store_feedback
from outpost.hub.service import Hub
from outpost.hub.tokens import Tokens
from outpost.hubs import HubConfig, hub_name, save_hub
from outpost.ingest.chunker import Chunker
from outpost.llm.base import ChatModel, GenerationParams, Message
from outpost.llm.bundled import resolve_gguf
from outpost.models.lora_gguf import LoraWeights, permute_rows, write_lora_gguf
from outpost.models.registry import Registry
from outpost.settings import Settings

FACTS = "# Site facts\n\nThe Zorblat office code is 4719. Quendris badges are teal. Veltra parking is on floor 9.\n"
QUESTIONS = [
    "What is the Zorblat office code?",
    "Tell me the Zorblat office code.",
    "Which code opens the Zorblat office?",
    "What code does the Zorblat office use?",
    "I need the Zorblat office code.",
    "Zorblat office code?",
    "What colour is the Quendris badge?",
    "Which colour are Quendris badges?",
    "Tell me the Quendris badge colour.",
    "What is the colour of a Quendris badge?",
    "Quendris badge colour?",
    "Which badge colour does Quendris use?",
    "Where is Veltra parking?",
    "Which floor is Veltra parking on?",
    "Tell me the Veltra parking floor.",
    "What floor do Veltra staff park on?",
    "Veltra parking floor?",
    "On what floor is the Veltra car park?",
]
NEW_QUESTION = "What's the code for the Zorblat office?"  # asked on the laptop; never trained on


# -- the GGUF LoRA format -----------------------------------------------------------------------


def test_permute_rows_interleaves_each_heads_rotary_halves() -> None:
    rows = np.arange(8, dtype=np.float32)[:, None]  # 2 heads × (2 halves × 2 rows)
    assert permute_rows(rows, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    with pytest.raises(ConfigError, match="rotary"):
        permute_rows(np.zeros((6, 1)), 2)


def test_lora_gguf_has_llama_cpps_metadata_names_and_shapes(tmp_path: Path) -> None:
    import gguf

    rng = np.random.default_rng(0)
    q = LoraWeights(rng.normal(size=(2, 8)).astype(np.float32), rng.normal(size=(8, 2)).astype(np.float32))
    down = LoraWeights(rng.normal(size=(2, 16)).astype(np.float32), rng.normal(size=(8, 2)).astype(np.float32))
    path = write_lora_gguf(
        tmp_path / "a.gguf",
        {"model.layers.0.self_attn.q_proj": q, "model.layers.1.mlp.down_proj": down},
        alpha=4.0,
        arch="llama",
        blocks=2,
        n_head=2,
        n_head_kv=1,
    )
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["adapter.lora.alpha"].contents() == 4.0
    tensors = {t.name: t for t in reader.tensors}
    assert sorted(tensors) == [
        "blk.0.attn_q.weight.lora_a",
        "blk.0.attn_q.weight.lora_b",
        "blk.1.ffn_down.weight.lora_a",
        "blk.1.ffn_down.weight.lora_b",
    ]
    # ggml order: a is ne=[in, rank], b is ne=[rank, out] — what llama_adapter_lora_init checks
    assert tensors["blk.1.ffn_down.weight.lora_a"].shape.tolist() == [16, 2]
    assert tensors["blk.1.ffn_down.weight.lora_b"].shape.tolist() == [2, 8]
    stored_b = np.asarray(tensors["blk.0.attn_q.weight.lora_b"].data).reshape(8, 2)
    assert np.array_equal(stored_b, permute_rows(q.b, 2))  # q rows permuted as llama.cpp permutes attn_q
    stored_down = np.asarray(tensors["blk.1.ffn_down.weight.lora_b"].data).reshape(8, 2)
    assert np.array_equal(stored_down, down.b)  # others as they are


def test_lora_gguf_refuses_modules_it_cannot_name(tmp_path: Path) -> None:
    w = LoraWeights(np.zeros((1, 2), np.float32), np.zeros((2, 1), np.float32))
    shape = {"alpha": 1.0, "blocks": 1, "n_head": 1, "n_head_kv": 1}
    with pytest.raises(ConfigError, match="No GGUF tensor"):
        write_lora_gguf(tmp_path / "x.gguf", {"model.nowhere.proj": w}, arch="llama", **shape)
    with pytest.raises(ConfigError, match="architecture"):
        write_lora_gguf(tmp_path / "x.gguf", {"a": w}, arch="no-such-arch", **shape)


# -- pairs --------------------------------------------------------------------------------------


def test_pairs_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"question": "Q?", "answer": "A.", "heldout": true}\n\n{"question": "only"}\n')
    with pytest.raises(ConfigError, match="line 3"):
        load_pairs(path)
    path.write_text('{"question": "Q?", "answer": "A.", "heldout": true}\n{"question": "R?", "answer": "B."}\n')
    assert load_pairs(path) == [QAPair("Q?", "A.", True), QAPair("R?", "B.", None)]


def test_split_is_stable_honours_pins_and_needs_both_sides() -> None:
    pairs = [QAPair(f"question {i}?", "answer") for i in range(50)]
    train, held = split_pairs(pairs)
    assert split_pairs(pairs) == (train, held) and 0 < len(held) < 25
    pinned = [QAPair("a?", "x", True), QAPair("b?", "y", False)]
    assert split_pairs(pinned) == ([pinned[1]], [pinned[0]])
    with pytest.raises(ConfigError, match="held out"):
        split_pairs([QAPair("a?", "x", False)])


def test_the_answer_from_a_helpful_chunk_is_its_best_matching_sentence() -> None:
    assert _best_sentence("Which code opens the Zorblat office?", FACTS) == "The Zorblat office code is 4719."
    assert _best_sentence("Where is Veltra parking?", FACTS) == "Veltra parking is on floor 9."
    assert _best_sentence("Unrelated words entirely", FACTS) is None


# -- the whole loop -----------------------------------------------------------------------------


def _hub_with_feedback(hub_home: Path, embedder) -> Hub:  # type: ignore[no-untyped-def]
    """A hub collection holding the facts, and helpful votes (with question text) on its chunk."""
    docs = hub_home.parent / "docs"
    docs.mkdir()
    (docs / "facts.md").write_text(FACTS)
    HubHome.at(hub_home).init()
    hub = Hub(HubHome.at(hub_home))
    hub.ingest([docs], "ops", embedder, Chunker(embedder.count_tokens, 200, 30, embedder.identity.name))
    store = hub.store("ops")
    (chunk,) = [row[0] for row in store.db.execute("SELECT id FROM chunks")]
    store.close()
    vectors = embedder.embed(QUESTIONS)
    items = [
        {"id": f"fb{i}", "query": q, "query_vector": v.tolist(), "shown": [chunk], "answer_vote": 1,
         "source_votes": {chunk: 1}}
        for i, (q, v) in enumerate(zip(QUESTIONS, vectors))
    ]  # fmt: skip
    items.append({**items[0], "id": "no-text", "query": None})  # text not shared: skipped
    store_feedback(hub.home, "ops", None, items)
    return hub


def _answer(home: Path, model: str, question: str) -> str:
    from outpost.models.load import load_chat_model

    chat = load_chat_model(Settings(home=home), model)
    return chat.complete([{"role": "user", "content": question}], GenerationParams(temperature=0.0, max_tokens=40))


class _Asker(ChatModel):
    """A stand-in for the hub's model that asks a fixed question (the pairing logic is what is tested)."""

    name, n_ctx = "asker", 2048

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def prompt_tokens(self, messages: list[Message]) -> int:
        return 1

    def stream(self, messages: list[Message], params: GenerationParams, extra_stop: list[str] | None = None):  # type: ignore[no-untyped-def]
        self.prompts.append(messages[-1]["content"])
        yield "Which facts does the site list?\nextra line"


def test_pairs_come_from_helpful_feedback_with_text_and_from_chunks(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    hub = _hub_with_feedback(tmp_path / "hubsite", embedder)
    pairs = feedback_pairs(hub, "ops")
    assert len(pairs) == len(QUESTIONS) and {p.origin for p in pairs} == {"feedback"}  # the text-less vote is skipped
    answers = {p.question: p.answer for p in pairs}
    assert answers[QUESTIONS[2]] == "The Zorblat office code is 4719."
    assert answers[QUESTIONS[7]] == "Quendris badges are teal."
    asker = _Asker()
    (generated,) = generated_pairs(hub, "ops", asker, limit=5)
    assert generated == QAPair("Which facts does the site list?", "The Zorblat office code is 4719.", None, "generated")
    assert "Sentence: The Zorblat office code is 4719." in asker.prompts[0]


@pytest.mark.slow
def test_a_lora_trained_on_the_hub_reaches_the_laptop_and_teaches_it_the_fact(
    tmp_path: Path, home: Path, embedder
) -> None:  # type: ignore[no-untyped-def]
    hub_home = tmp_path / "hubsite"
    _hub_with_feedback(hub_home, embedder)
    # bounded, with room for a busy machine: on 2 idle cores this run takes about a minute
    trained = outpost_cli("hub", "finetune", "-c", "ops", "--steps", "40", "--layers", "4", home=hub_home, timeout=1800)
    assert trained.returncode == 0, trained.stderr
    assert "published hub model ops-lora" in trained.stdout
    assert "feedback" in trained.stderr and "gain +" in trained.stderr

    # a laptop with a token for the model pulls it like any hub model, verified against the signed manifest
    secret = Tokens(HubHome.at(hub_home)).create("laptop", models=["ops-lora"])[0]
    with HubServer(hub_home) as server:
        save_hub(home, HubConfig(hub_name(server.url), server.url, secret, HubHome.at(hub_home).public_key))
        pulled = outpost_cli("models", "pull", "hub://ops-lora", home=home)
        assert pulled.returncode == 0, pulled.stderr
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM smollm2\nADAPTER ops-lora\n")
    created = outpost_cli("models", "create", "zorblat", "-f", str(modelfile), home=home)
    assert created.returncode == 0, created.stderr
    adapter = Registry(home).get("ops-lora")
    assert Registry(home).get("zorblat").modelfile == f"FROM smollm2\nADAPTER {adapter.path}\n"

    before, after = _answer(home, "smollm2", NEW_QUESTION), _answer(home, "zorblat", NEW_QUESTION)
    assert "4719" not in before
    assert "4719" in after, after

    # training that cannot help (no steps: the adapter is the base model) is refused, and nothing is published
    refused = outpost_cli(
        "hub", "finetune", "-c", "ops", "--steps", "0", "--name", "ops-2", home=hub_home, timeout=1800
    )
    assert refused.returncode == 1
    assert "not published: the adapter does not beat smollm2" in refused.stderr
    assert "gain +0.000" in refused.stderr
    assert [e.name for e in Registry(HubHome.at(hub_home).root).list() if e.source != "bundled"] == ["ops-lora"]


@pytest.mark.slow
def test_the_gguf_lora_changes_llama_cpp_as_peft_changes_transformers(tmp_path: Path) -> None:
    """Oracle for the conversion, q/k permutation included: a random LoRA on every projection moves
    llama.cpp's logits the way it moves Transformers' (the residual is llama.cpp's Q4_1 arithmetic)."""
    import torch

    from outpost.finetune.heldout import _llama
    from outpost.finetune.train import TrainConfig, _lora_model, _lora_weights, encode_pair, load_base

    base = resolve_gguf("smollm2")
    tokenizer, model = load_base(base, "cpu")
    torch.manual_seed(0)
    peft_model, _ = _lora_model(model, TrainConfig(layers=30, targets=("q_proj", "k_proj")), "cpu")
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    ids, _ = encode_pair(tokenizer, QAPair(QUESTIONS[0], "The Zorblat office code is 4719."))
    with torch.no_grad():
        adapted = peft_model(input_ids=torch.tensor([ids])).logits[0].numpy()
        with peft_model.disable_adapter():
            plain = peft_model(input_ids=torch.tensor([ids])).logits[0].numpy()
    path = write_lora_gguf(
        tmp_path / "qk.gguf", _lora_weights(peft_model), alpha=16.0, arch="llama", blocks=30, n_head=9, n_head_kv=3
    )
    logits = {}
    for lora in (None, path):
        llm = _llama(base, lora, 256, None, logits_all=True)
        llm.eval(ids)
        logits[lora] = np.array(llm.scores[: len(ids)])
        llm.close()
    moved_hf, moved_cpp = (adapted - plain).ravel(), (logits[path] - logits[None]).ravel()
    # measured: 0.90 with the permutation, 0.11 without it
    assert np.corrcoef(moved_hf, moved_cpp)[0, 1] > 0.8


@pytest.mark.slow  # assembles Gemma 3 270M in the test's home and loads it in a subprocess (~10 s)
def test_the_held_out_judge_loads_gemma_quietly(home: Path) -> None:
    """The hub's held-out judge loads GGUFs the way answering does: llama.cpp's own log lines (Gemma 3:
    ``llama_kv_cache_iswa: using full-size SWA cache``) go to logging, never to the CLI's stderr."""
    import subprocess
    import sys

    from outpost.models.resolve import resolve_model

    gemma = resolve_model(home, "gemma3-270m").path
    code = "import sys; from pathlib import Path; from outpost.finetune.heldout import _llama; "
    code += "_llama(Path(sys.argv[1]), None, 512, 1)"
    proc = subprocess.run([sys.executable, "-c", code, str(gemma)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith(("llama", "ggml"))] == [], proc.stderr
