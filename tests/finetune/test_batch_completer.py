"""Many completions on one llama.cpp context (``outpost.llm.batch``), with the real bundled SmolLM2."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from outpost.errors import ConfigError, ModelNotFoundError
from outpost.llm import resolve_gguf
from outpost.llm.batch import BatchCompleter

pytestmark = pytest.mark.slow

PREFIX = "Capitals of countries, one per line.\n\nFrance: Paris\nItaly: Rome\n"
COUNTRIES = ["Spain", "Germany", "Japan", "Egypt", "Peru", "Kenya", "Norway", "Chile", "India", "Canada", "Greece"]


@pytest.fixture(scope="module")
def completer() -> Iterator[BatchCompleter]:
    with BatchCompleter(resolve_gguf("smollm2"), slots=4, slot_ctx=256, n_threads=2) as model:
        yield model


def test_every_prompt_gets_one_completion_when_prompts_outnumber_slots(completer: BatchCompleter) -> None:
    prompts = [f"{c}:" for c in COUNTRIES]
    replies = list(completer.complete(prompts, prefix=PREFIX, max_tokens=8, stop="\n"))
    assert sorted(i for i, _ in replies) == list(range(len(prompts)))  # each exactly once, 11 prompts on 4 slots
    answers = dict(replies)
    assert all("\n" not in text for text in answers.values())  # the stop string ends a reply and is left out
    assert (
        answers[1].strip(),
        answers[2].strip(),
        answers[10].strip(),
    ) == ("Berlin", "Tokyo", "Athens")  # SmolLM2 knows these


def test_a_shared_prefix_completes_as_the_whole_prompt_would(completer: BatchCompleter) -> None:
    """The prefix's KV cells, shared by every slot, hold exactly what evaluating it inline computes
    (one slot: the same arithmetic, so the same greedy tokens)."""
    with BatchCompleter(resolve_gguf("smollm2"), slots=1, slot_ctx=256, n_threads=2) as one:
        shared = dict(one.complete([f"{c}:" for c in COUNTRIES[:4]], prefix=PREFIX, max_tokens=12, stop=""))
        inline = dict(one.complete([f"{PREFIX}{c}:" for c in COUNTRIES[:4]], max_tokens=12, stop=""))
    assert shared == inline
    assert all(len(completer.tokenize(text, bos=False)) >= 10 for text in shared.values())  # ran to max_tokens


def test_max_tokens_and_a_prompt_longer_than_its_slot(completer: BatchCompleter) -> None:
    long = "word " * 600 + "\nSpain:"  # more tokens than the 256-token slot: the start is cut, the end kept
    replies = dict(completer.complete([long, "Japan:"], prefix=PREFIX, max_tokens=3, stop=""))
    assert set(replies) == {0, 1}
    assert all(len(completer.tokenize(text, bos=False)) <= 4 for text in replies.values())


def test_nothing_to_complete_and_a_missing_model(completer: BatchCompleter, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert list(completer.complete([], prefix=PREFIX)) == []
    with pytest.raises(ConfigError, match="prompt 1 is empty"):
        list(completer.complete(["Spain:", ""], prefix=PREFIX))
    assert dict(completer.complete(["Greece:"], prefix=PREFIX, max_tokens=4, stop="\n")) == {0: " Athens"}  # still fine
    with pytest.raises(ModelNotFoundError, match="No GGUF file"):
        BatchCompleter(tmp_path / "none.gguf")


# -- scoring ---------------------------------------------------------------------------------------------------


def _reference_loglikelihood(path, context: str, continuation: str) -> float:  # type: ignore[no-untyped-def]
    """The same quantity from llama-cpp-python's own ``Llama`` (one sequence, logits for every position): an
    independent reading of what ``BatchCompleter.loglikelihood`` computes from its batched passes."""
    import numpy as np

    from outpost.llm.llamacpp import load_llama

    llm = load_llama(path, n_ctx=256, logits_all=True, n_threads=2)
    head = llm.tokenize(context.encode(), add_bos=True, special=False)
    tail = llm.tokenize(continuation.encode(), add_bos=False, special=False)
    llm.eval(head + tail)
    logits = np.asarray(llm.scores[len(head) - 1 : len(head) + len(tail) - 1], dtype=np.float64)
    peak = logits.max(axis=1, keepdims=True)
    logz = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
    return float((logits[np.arange(len(tail)), tail] - logz).sum())


def test_loglikelihood_ranks_the_true_continuation_first(completer: BatchCompleter) -> None:
    pairs = [("Germany:", " Berlin"), ("Germany:", " Madrid"), ("Spain:", " Madrid"), ("Spain:", " Berlin")] * 2
    scores = dict(completer.loglikelihood(pairs, prefix=PREFIX))  # 8 pairs on 4 slots: two passes
    assert sorted(scores) == list(range(8))
    assert scores[0] > scores[1] and scores[2] > scores[3]
    assert all(s < 0 for s in scores.values())
    assert scores[4] == pytest.approx(scores[0], abs=0.05)  # the same pair in the next pass scores the same


def test_loglikelihood_is_what_one_sequence_with_every_logit_gives(completer: BatchCompleter) -> None:
    path = resolve_gguf("smollm2")
    pairs = [(f"{PREFIX}Japan:", " Tokyo"), (f"{PREFIX}Kenya:", " the capital is Nairobi")]
    shared = dict(completer.loglikelihood([(p[len(PREFIX) :], c) for p, c in pairs], prefix=PREFIX))
    inline = dict(completer.loglikelihood(pairs))
    for i, (context, continuation) in enumerate(pairs):
        expected = _reference_loglikelihood(path, context, continuation)
        assert shared[i] == pytest.approx(expected, abs=0.05)
        assert inline[i] == pytest.approx(expected, abs=0.05)
    assert shared[1] < shared[0]  # six tokens cost more than one likely token


def test_loglikelihood_refuses_what_it_cannot_score(completer: BatchCompleter) -> None:
    with pytest.raises(ConfigError, match="pair 1 needs both a context and a continuation"):
        list(completer.loglikelihood([("Spain:", " Madrid"), ("Peru:", "")]))
    with pytest.raises(ConfigError, match="its continuation alone fills"):
        list(completer.loglikelihood([("Spain:", " Madrid" * 300)]))
    long = dict(completer.loglikelihood([("word " * 600 + "\nSpain:", " Madrid")], prefix=PREFIX))
    assert -50 < long[0] < 0  # a context longer than its slot loses its start and still scores
