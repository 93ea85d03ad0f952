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
