"""Evidence and grounding with the real all-MiniLM-L6-v2 embedder; answers with the real bundled GGUFs.

The fast tests check the core (``outpost.evidence``) and the extractive path, which need no LLM; the slow
ones go through the real default chat model: the Python API, both HTTP dialects (the official ``openai``
client and raw HTTP against a real server on 127.0.0.1) and ``outpost quickstart`` in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from hubkit import ServerThread
from outpost import Outpost
from outpost.api import create_app
from outpost.embed.sentence_transformers import SentenceTransformerEmbedder
from outpost.errors import ModelNotFoundError
from outpost.evidence import MIN_CONFIDENCE, find_evidence, ground, split_sentences
from outpost.rag import UNSUPPORTED_NOTICE, UNSURE_NOTICE, ground_answer
from outpost.records import Answer, Source
from outpost.settings import Settings

HANDBOOK = """Time off
New hires get 20 vacation days per year, accrued monthly from their first day. After three full
years of service the allowance rises to 25 days. Your manager, Dana Whitfield, approves requests
within five working days.
Sick leave is separate from vacation and is not capped."""
EXPENSES = "Meals on business trips are reimbursed up to 45 EUR per day. Keep every receipt for 2 years."
QUESTION = "How many vacation days do new hires get?"


@pytest.fixture
def sources() -> list[Source]:
    return [
        Source(1, "handbook.md", "c1", 0.9, HANDBOOK, heading="Time off"),
        Source(2, "expenses.html", "c2", 0.5, EXPENSES),
    ]


def test_sentences_join_hard_wrapped_lines_and_keep_headings_apart() -> None:
    sentences = split_sentences(HANDBOOK)
    assert sentences[0] == "Time off"
    assert "After three full years of service the allowance rises to 25 days." in sentences
    assert split_sentences("See e.g. the HR portal. Ask J. Smith first.") == [
        "See e.g. the HR portal.",
        "Ask J. Smith first.",
    ]


def test_evidence_is_the_sentence_that_answers(sources: list[Source], embedder: SentenceTransformerEmbedder) -> None:
    best = find_evidence(QUESTION, sources, embedder)
    assert best[0].source == 1
    assert best[0].text == "New hires get 20 vacation days per year, accrued monthly from their first day."
    meals = find_evidence("What is the daily limit for meals when travelling?", sources, embedder)
    assert meals[0].source == 2 and "45 EUR" in meals[0].text


def test_a_faithful_answer_passes(sources: list[Source], embedder: SentenceTransformerEmbedder) -> None:
    for reply in ("New hires get 20 vacation days per year [1].", "20 days.", "Twenty vacation days a year.", "20"):
        result = ground(QUESTION, reply, sources, embedder)
        assert result.status == "supported", (reply, result.claims)
        assert result.claims[0].evidence is not None and "20 vacation days" in result.claims[0].evidence.text
    assert result.evidence[0].text.startswith("New hires get 20")


@pytest.mark.parametrize(
    ("reply", "because"),
    [
        ("New hires get 30 vacation days per year [1].", "Source [1] does not mention “30”."),
        (
            "New hires get 25 vacation days per year [1].",
            "Source [1] mentions “25”, but not in what it says about this.",
        ),
        ("Requests are approved by Maria Lopez [1].", "Source [1] does not mention “Maria” or “Lopez”."),
        ("New hires get 20 vacation days per year [2].", "Source [2] does not mention “20”."),  # wrong citation
        ("The answer is: 2", "Sources [1], [2] mention “2”, but not in what they say about this."),  # issue 16
        ("How many vacation days do new hires get?", "It repeats the question instead of answering it."),
        ("New hires get vacation days.", "It repeats the question instead of answering it."),  # nothing new
        ("Sick leave is separate from vacation and is not capped [1].", "does not answer the question"),  # true
    ],
)
def test_a_planted_wrong_number_or_name_is_flagged(
    reply: str, because: str, sources: list[Source], embedder: SentenceTransformerEmbedder
) -> None:
    result = ground(QUESTION, reply, sources, embedder)
    assert result.status == "unsupported"
    assert [c.supported for c in result.claims] == [False]
    assert because in result.claims[0].reason
    assert result.claims[0].reason[0].isupper() and result.claims[0].reason.endswith(".")  # a plain sentence
    assert result.evidence[0].text.startswith("New hires get 20")  # the evidence is still the right sentence


@pytest.mark.parametrize(
    ("question", "reply", "supported"),
    [
        (QUESTION, "Vacation days accrue monthly from the first day [1].", False),  # true, but no number
        (QUESTION, "Twenty [1].", True),
        ("Who approves vacation requests?", "The manager approves requests [1].", False),  # true, but no name
        ("Who approves vacation requests?", "Dana Whitfield [1].", True),
    ],
)
def test_an_answer_of_the_wrong_kind_is_flagged(
    question: str, reply: str, supported: bool, sources: list[Source], embedder: SentenceTransformerEmbedder
) -> None:
    result = ground(question, reply, sources, embedder)
    assert (result.status == "supported") is supported, result.claims
    if not supported:
        assert "The question asks for a" in result.claims[0].reason


def test_the_questions_own_names_need_not_be_in_the_answering_sentence(
    embedder: SentenceTransformerEmbedder,
) -> None:
    """ "… in Victoria" restates the question: the source that answers may leave Victoria implicit."""
    text = (
        "Private fee-paying schools include parish schools run by the Roman Catholic Church. Independent "
        "schools are similar to British public schools."
    )
    question = "What church runs some private schools in Victoria?"
    reply = "The Roman Catholic Church runs some private schools in Victoria."
    result = ground(question, reply, [Source(1, "schools.md", "c1", 0.9, text)], embedder)
    assert result.status == "supported", result.claims
    assert result.claims[0].reason == "Supported by source [1]."


@pytest.mark.parametrize(
    ("question", "reply", "text", "supported"),
    [  # replies of Gemma 3 270M on SQuAD dev, on shortened sources
        (  # the model's own shorthand is no fact the sources must hold
            "What organization runs the public schools in Victoria?",
            "The Victoria Department of Education (VDE) runs them.",
            "Public schools are funded and run directly by the Victoria Department of Education.",
            True,
        ),
        (  # "the United States" spells out the question's "US": it restates the question
            "Who does Edward Said say is being attacked by US imperialism?",
            "The United States.",
            "Edward Said described the United States as attacking the contemporary Orient.",
            False,
        ),
        (  # a one-letter name is a name
            "What kind of cell identifies pathogens?",
            "The B cell.",
            "The B cell identifies pathogens when antibodies on its surface bind a specific foreign antigen.",
            True,
        ),
    ],
)
def test_initialisms_and_one_letter_names(
    question: str, reply: str, text: str, supported: bool, embedder: SentenceTransformerEmbedder
) -> None:
    result = ground(question, reply, [Source(1, "s.md", "c1", 0.9, text)], embedder)
    assert (result.status == "supported") is supported, result.claims


def test_only_the_unsupported_sentence_of_an_answer_is_marked(
    sources: list[Source], embedder: SentenceTransformerEmbedder
) -> None:
    reply = "New hires get 20 vacation days per year [1]. Meals are reimbursed up to 60 EUR per day [2]."
    result = ground(QUESTION, reply, sources, embedder)
    assert result.status == "partial"
    assert [c.supported for c in result.claims] == [True, False]
    assert result.claims[1].sources == (2,) and result.claims[1].reason == "Source [2] does not mention “60”."
    assert result.ms > 0


@pytest.mark.parametrize(
    ("confidence", "status"),
    [(None, "supported"), (0.9, "supported"), (MIN_CONFIDENCE, "supported"), (0.2, "unsupported")],
)
def test_an_answer_its_model_was_unsure_of_is_flagged(
    confidence: float | None, status: str, sources: list[Source], embedder: SentenceTransformerEmbedder
) -> None:
    result = ground(QUESTION, "New hires get 20 vacation days per year [1].", sources, embedder, confidence=confidence)
    assert result.status == status and result.unsure is (status == "unsupported")
    if status == "unsupported":
        assert result.claims[0].reason == "The model was unsure of this answer (confidence 20%)."
        assert result.evidence[0].text.startswith("New hires get 20")


def test_an_unsure_answer_keeps_the_reasons_the_sources_give(
    sources: list[Source], embedder: SentenceTransformerEmbedder
) -> None:
    """Confidence only marks what the sources would have passed; the reader sees the sources' own reason first."""
    result = ground(QUESTION, "New hires get 30 vacation days per year [1].", sources, embedder, confidence=0.1)
    assert result.claims[0].reason == "Source [1] does not mention “30”." and not result.unsure


def test_the_notice_says_whether_the_sources_or_the_model_failed(
    sources: list[Source], embedder: SentenceTransformerEmbedder
) -> None:
    def shown(reply: str, confidence: float) -> Answer:
        answer = Answer(QUESTION, reply, list(sources), "m", generated=reply, confidence=confidence)
        return ground_answer(answer, embedder)

    unsure = shown("New hires get 20 vacation days per year [1].", 0.2)
    assert unsure.notice == UNSURE_NOTICE and unsure.text.startswith(UNSURE_NOTICE + "\nNew hires get 20")
    wrong = shown("New hires get 30 vacation days per year [1].", 0.2)
    assert wrong.notice == UNSUPPORTED_NOTICE
    assert shown("New hires get 20 vacation days per year [1].", 0.9).notice == ""


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Outpost:
    op = Outpost(home=tmp_path_factory.mktemp("evidence-home"))
    op.ingest(sample_dir, collection="samples")
    return op


def test_extractive_answers_without_any_llm(samples: Outpost) -> None:
    answer = samples.ask(QUESTION, "samples", extractive=True)
    assert answer.grounding == "extractive" and answer.model == "extractive" and answer.generated == ""
    assert answer.text.startswith("New hires get 20 vacation days per year") and answer.text.endswith("[1]")
    assert answer.cited == [1] and answer.sources[0].evidence[0].text == answer.evidence[0].text
    assert not [m for m in samples.__dict__.values() if "Llama" in type(m).__name__]


def test_no_loadable_default_model_answers_extractively_and_says_so(samples: Outpost) -> None:
    op = Outpost(settings=samples.settings, llm_model="no-such-model")
    answer = op.ask(QUESTION, "samples")
    assert answer.grounding == "extractive" and "20 vacation days" in answer.text
    assert "No chat model could load" in answer.notice and "no-such-model" in answer.notice
    with pytest.raises(ModelNotFoundError):  # a model the caller names must exist
        op.ask(QUESTION, "samples", model="no-such-model")


# -- with the real default chat model -------------------------------------------------------------------


@pytest.mark.slow
def test_the_default_model_answers_the_quickstart_question_with_evidence(samples: Outpost) -> None:
    answer = samples.ask(QUESTION, "samples", stream=True)
    pieces = list(answer)
    done = answer.result()
    assert "".join(pieces).strip() == done.generated
    assert "20" in done.text and done.grounding == "supported", (done.generated, done.claims)
    assert done.confidence is not None and MIN_CONFIDENCE <= done.confidence <= 1  # llama.cpp's own probabilities
    assert done.evidence[0].source == 1 and "20 vacation days" in done.evidence[0].text


@pytest.fixture(scope="module")
def api(samples: Outpost) -> Iterator[ServerThread]:
    with ServerThread(create_app(Settings(home=samples.settings.home, n_ctx=2048))) as running:
        yield running


@pytest.mark.slow
def test_both_api_dialects_return_evidence_and_grounding(api: ServerThread) -> None:
    client = openai.OpenAI(base_url=f"{api.url}/v1", api_key="unused")
    raw = client.chat.completions.with_raw_response.create(
        model="rag:samples", messages=[{"role": "user", "content": QUESTION}], temperature=0.0, max_tokens=48
    )
    body = json.loads(raw.text)
    assert raw.parse().choices[0].message.content == body["choices"][0]["message"]["content"]
    first = body["sources"][0]
    assert first["number"] == 1 and "20 vacation days" in first["evidence"][0]["text"]
    grounding = body["grounding"]
    assert grounding["status"] == "supported" and grounding["claims"][0]["supported"] is True
    assert 0 < grounding["confidence"] <= 1
    assert {"text", "supported", "score", "reason", "sources", "evidence"} <= set(grounding["claims"][0])

    # streamed: the evidence and the verdict arrive with the final event, after the last piece
    with httpx.stream(
        "POST",
        f"{api.url}/api/chat",
        json={
            "model": "rag:samples",
            "messages": [{"role": "user", "content": QUESTION}],
            "options": {"temperature": 0},
        },
        timeout=300,
    ) as response:
        events = [json.loads(line) for line in response.iter_lines() if line]
    final = events[-1]
    assert final["done"] and all("grounding" not in e for e in events[:-1])
    assert "20 vacation days" in final["sources"][0]["evidence"][0]["text"]
    assert final["grounding"]["status"] in ("supported", "partial", "unsupported")
    assert final["grounding"]["evidence"][0]["text"].startswith("New hires get 20")


@pytest.mark.slow
def test_quickstart_answers_its_own_question_right_with_evidence(home: Path) -> None:
    env = {**os.environ, "OUTPOST_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "outpost", "quickstart"], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr
    # llama.cpp's own log lines (Gemma: "llama_kv_cache_iswa: using full-size SWA cache") go to logging, not here
    native = [line for line in proc.stderr.splitlines() if line.startswith(("llama", "ggml", "load", "print_info"))]
    assert native == [], proc.stderr
    answer = proc.stdout.split("A: ", 1)[1].split("\nEvidence:", 1)[0]
    assert "20" in answer
    assert "✓ every sentence is supported by the sources" in answer
    assert "unsupported" not in proc.stdout.lower() and "NOT SUPPORTED" not in proc.stdout
    evidence = proc.stdout.split("\nEvidence:", 1)[1].split("Sources:", 1)[0]
    assert "[1] “New hires get 20 vacation days per year, accrued monthly from their first day.”" in evidence
