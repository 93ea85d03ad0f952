"""Does an adapter help? Measured by llama.cpp, with and without it, on held-out pairs.

Two figures per model: the mean log-likelihood per token of the gold answers (the gate: smooth, so a
small held-out set still separates a useful adapter from a useless or harmful one), and how often the
greedy answer contains the gold answer (what a user sees; reported, and it must not drop). Both go
through llama-cpp-python — the runtime laptops load the adapter into — with the same prompt token
ids training used (the GGUF's chat template renders identically in both).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Judgement", "Score", "judge"]

log = logging.getLogger(__name__)

Encoded = tuple[list[int], int]  # prompt + answer ids, prompt length


@dataclass(frozen=True)
class Score:
    loglik: float  # mean log-likelihood per gold answer token
    contains: float  # share of greedy answers that contain the gold answer
    answers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Judgement:
    base: Score
    adapted: Score
    min_gain: float

    @property
    def gain(self) -> float:
        return self.adapted.loglik - self.base.loglik

    @property
    def helps(self) -> bool:
        return self.gain >= self.min_gain and self.adapted.contains >= self.base.contains

    def summary(self) -> str:
        return (
            f"held-out answer log-likelihood {self.base.loglik:.3f} → {self.adapted.loglik:.3f} per token "
            f"(gain {self.gain:+.3f}, needed {self.min_gain:+.3f}); greedy answers containing the gold "
            f"{self.base.contains:.0%} → {self.adapted.contains:.0%}"
        )


def _normal(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def _llama(model: Path, lora: Path | None, n_ctx: int, n_threads: int | None, logits_all: bool = False) -> Any:
    from outpost.cpus import usable_cpus
    from outpost.llm.llamacpp import load_llama  # the same load path (logs, segfault guard) as answering
    from outpost.models.advisor import offload_layers

    return load_llama(
        model,
        lora_path=str(lora) if lora else None,
        n_ctx=n_ctx,
        n_threads=n_threads or usable_cpus(),
        n_gpu_layers=offload_layers(model, n_ctx),
        logits_all=logits_all,  # off: on a busy CPU it made each evaluation ~7x slower (measured)
    )


def _next_logprobs(llm: Any) -> np.ndarray:
    """Log-probabilities of the token after what ``llm`` has evaluated (its last logits row)."""
    import llama_cpp

    row = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    logits = np.ctypeslib.as_array(row, shape=(llm.n_vocab(),)).astype(np.float64)
    top = logits.max()
    logprobs: np.ndarray = logits - top - np.log(np.exp(logits - top).sum())
    return logprobs


def _loglik(llm: Any, ids: list[int], n_prompt: int) -> tuple[float, int]:
    """Sum of log-probabilities of ``ids[n_prompt:]`` given what precedes each, and their count.

    The answer is fed one token at a time, as generation would see it, reading each next-token row.
    """
    llm.reset()
    llm.eval(ids[:n_prompt])
    total = 0.0
    for token in ids[n_prompt:]:
        total += float(_next_logprobs(llm)[token])
        llm.eval([token])
    return total, len(ids) - n_prompt


def _greedy(llm: Any, prompt: list[int], max_tokens: int) -> str:
    llm.reset()
    out = llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0, stop=["<|im_end|>"])
    return str(out["choices"][0]["text"])


def _score(llm: Any, encoded: Sequence[Encoded], golds: Sequence[str], max_tokens: int) -> Score:
    total, count, hits, answers = 0.0, 0, 0, []
    for (ids, n_prompt), gold in zip(encoded, golds):
        logprob, n = _loglik(llm, ids, n_prompt)
        total, count = total + logprob, count + n
        answer = _greedy(llm, ids[:n_prompt], max_tokens)
        answers.append(answer)
        hits += _normal(gold) in _normal(answer)
    return Score(total / max(1, count), hits / max(1, len(golds)), tuple(answers))


def judge(
    model: Path,
    adapter: Path,
    encoded: Sequence[Encoded],
    golds: Sequence[str],
    min_gain: float = 0.05,
    n_threads: int | None = None,
    max_tokens: int | None = None,
) -> Judgement:
    """Score ``golds`` (held-out answers, token ids in ``encoded``) with and without ``adapter``.

    Greedy answers get the longest gold answer's length plus a few tokens (``max_tokens``), enough to
    contain the gold answer and no more: the base model's rambling costs time and proves nothing.
    """
    max_tokens = max_tokens or max(len(ids) - n for ids, n in encoded) + 8
    n_ctx = max(len(ids) for ids, _ in encoded) + max_tokens + 8
    scores = []
    for lora in (None, adapter):
        llm = _llama(model, lora, n_ctx, n_threads)
        try:
            scores.append(_score(llm, encoded, golds, max_tokens))
        finally:
            llm.close()
    judgement = Judgement(scores[0], scores[1], min_gain)
    log.info("%s", judgement.summary())
    return judgement
