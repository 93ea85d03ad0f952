"""Answers end to end with the real bundled SmolLM2 GGUF through llama.cpp."""

from __future__ import annotations

from pathlib import Path

import pytest

from outpost import Answer, Outpost
from outpost.errors import ContextOverflowError, ModelNotFoundError
from outpost.llm import resolve_gguf
from outpost.llm.base import GenerationParams, Message
from outpost.llm.llamacpp import LlamaCppModel
from outpost.rag import SOURCES_PROMPT, SYSTEM_PROMPT, build_messages, cited_numbers, pack_sources, to_sources
from outpost.records import Chunk, Evidence, Hit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def small_ctx_model() -> LlamaCppModel:
    return LlamaCppModel(resolve_gguf("smollm2"), n_ctx=512, n_threads=2)


@pytest.fixture(scope="module")
def outpost_with_samples(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Outpost:
    op = Outpost(home=tmp_path_factory.mktemp("rag-home"))
    op.ingest(sample_dir, collection="samples")
    return op


def _hits(n: int, words: int) -> list[Hit]:
    text = " ".join(f"fact{i}" for i in range(words))
    return [Hit(Chunk(f"id{i}", f"doc{i}.txt", 0, f"Source {i}: {text}"), 1.0 / (i + 1)) for i in range(n)]


def test_the_bundled_model_uses_its_own_chat_template(small_ctx_model: LlamaCppModel) -> None:
    template = small_ctx_model.llm.metadata.get("tokenizer.chat_template", "")
    assert "<|im_start|>" in template  # SmolLM2 is ChatML
    tokens, stop = small_ctx_model._render([{"role": "user", "content": "hi"}])
    assert "<|im_end|>" in stop
    text = small_ctx_model.llm.detokenize(tokens, special=True).decode()
    assert text.rstrip().endswith("<|im_start|>assistant")


def test_scored_generation_is_the_same_reply_with_each_tokens_log_probability(small_ctx_model: LlamaCppModel) -> None:
    messages: list[Message] = [{"role": "user", "content": "Count from one to twenty, in words."}]
    params = GenerationParams(temperature=0.0, max_tokens=8, seed=0)
    logprobs: list[float] = []
    scored = "".join(small_ctx_model.stream_scored(messages, params, logprobs))
    assert scored == "".join(small_ctx_model.stream(messages, params))  # reading the scores changes nothing
    # it ran to the length limit: 8 tokens, the last never fed back, so never scored
    assert len(logprobs) == 7 and all(-50 < p <= 0 for p in logprobs)
    assert max(logprobs) > -0.7  # greedy picks each step's likeliest token: some are near-certain, not uniform
    stopped: list[float] = []
    short = "".join(small_ctx_model.stream_scored([{"role": "user", "content": "Say yes."}], params, stopped))
    assert short and 1 <= len(stopped) <= 7  # ended by its own end token, which is not counted


def test_packing_drops_the_lowest_ranked_sources_first(small_ctx_model: LlamaCppModel) -> None:
    sources = to_sources(_hits(6, 60))
    messages, kept = pack_sources(small_ctx_model, "What is fact3?", sources, max_tokens=100)
    assert 0 < len(kept) < 6
    assert [s.number for s in kept] == list(range(1, len(kept) + 1))  # a prefix: best ranks kept
    assert small_ctx_model.prompt_tokens(messages) + 100 <= small_ctx_model.n_ctx
    assert small_ctx_model.prompt_tokens(build_messages("What is fact3?", sources[: len(kept) + 1])) + 100 > 512


def test_an_evidence_prompt_holds_only_those_sentences_and_their_sources_come_first(
    small_ctx_model: LlamaCppModel,
) -> None:
    sources = to_sources(_hits(3, 40))
    evidence = [Evidence(3, "Source 2: fact7 is blue.", 0.9), Evidence(1, "Source 0: fact1 is red.", 0.5)]
    messages, kept = pack_sources(small_ctx_model, "What is fact7?", sources, max_tokens=50, evidence=evidence)
    # the sources of the prompt's sentences come first, numbered as the model saw them; the rest follow
    assert [(s.number, s.document) for s in kept] == [(1, "doc0.txt"), (2, "doc2.txt"), (3, "doc1.txt")]
    prompt = messages[-1]["content"]
    assert "[2] Source 2: fact7 is blue.\n[1] Source 0: fact1 is red." in prompt
    assert "fact30" not in prompt  # nothing else of the chunks


def test_the_instructions_suit_the_prompt_shape() -> None:
    """One evidence sentence: answer in a few words (measured best for the bundled models). Whole sources (a
    remote model, ``prompt_sentences = 0``): cite them by number. A caller's own instructions win."""
    sources = to_sources(_hits(2, 10))
    evidence = [Evidence(1, "Source 0: fact1 is red.", 0.9)]
    assert build_messages("q", sources, evidence=evidence)[0]["content"] == SYSTEM_PROMPT
    whole = build_messages("q", sources)[0]["content"]
    assert whole == SOURCES_PROMPT and "[1]" in whole
    assert build_messages("q", sources, "Talk like a pirate.")[0]["content"] == "Talk like a pirate."


def test_a_question_too_long_for_the_context_is_a_clear_error(small_ctx_model: LlamaCppModel) -> None:
    with pytest.raises(ContextOverflowError, match="context tokens"):
        pack_sources(small_ctx_model, "why " * 600, [], max_tokens=50)


def test_ask_answers_from_the_samples_and_lists_the_prompt_sources(outpost_with_samples: Outpost) -> None:
    answer = outpost_with_samples.ask(
        "How many vacation days do new hires get?", "samples", temperature=0.0, seed=0, max_tokens=64
    )
    assert isinstance(answer, Answer) and answer.text.strip()
    assert answer.sources[0].document == "employee-handbook.md"
    assert "20 vacation days" in answer.sources[0].text
    assert [s.number for s in answer.sources] == list(range(1, len(answer.sources) + 1))
    html = answer._repr_html_()
    assert "employee-handbook.md" in html and "<ol" in html


def test_streaming_yields_the_same_text_as_the_final_answer(outpost_with_samples: Outpost) -> None:
    stream = outpost_with_samples.ask(
        "What is the hotel limit in capital cities?", "samples", stream=True, temperature=0.0, seed=1, max_tokens=48
    )
    pieces = list(stream)
    assert len(pieces) > 1
    answer = stream.result()
    assert answer.generated == "".join(pieces).strip()  # what streamed is the model's reply, verbatim
    if answer.grounding != "unsupported":  # a reply the check cannot support is replaced by notice + evidence
        assert answer.text == answer.generated


def test_citations_are_parsed_within_range() -> None:
    assert cited_numbers("See [2] and [1], again [2]; not [9] or [0].", 3) == [2, 1]


def test_unknown_chat_model_names_say_what_exists() -> None:
    with pytest.raises(ModelNotFoundError, match="smollm2"):
        resolve_gguf("no-such-model")
    with pytest.raises(ModelNotFoundError, match="No GGUF file"):
        resolve_gguf("/nowhere/model.gguf")
