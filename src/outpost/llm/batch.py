"""Many short greedy completions at once on one llama.cpp context (continuous batching).

Why: the hub writes one question per chunk for thousands of chunks (``finetune.embedder.generate_questions``).
Generating them one at a time feeds llama.cpp one token per forward pass, which on a CPU spends most of its time
reading the weights once per token. Here up to ``slots`` completions share each forward pass (one sequence id
each in llama.cpp's KV cache), and a slot that finishes takes the next prompt at once, so the pass stays full.
Greedy only: the job needs the model's single most likely continuation. A prompt's reply can still differ from
a one-at-a-time run where two tokens nearly tie, because llama.cpp's arithmetic depends on the pass's shape
(measured: 11 of 15 NFCorpus questions identical with 8 slots vs 1); a rerun with the same prompts and slots
repeats itself.

:meth:`BatchCompleter.loglikelihood` scores fixed continuations the same way, many sequences per pass: how likely
the model finds a question after a passage is what lets the generator judge which passages a question fits
(``finetune.embedder.judge_pairs``).

The llama.cpp C API is used through llama-cpp-python's ctypes bindings: its ``Llama`` class holds one sequence.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from outpost.cpus import usable_cpus
from outpost.errors import ConfigError, ModelNotFoundError
from outpost.llm.llamacpp import _route_native_logs, plain_cpu_params

__all__ = ["BatchCompleter"]


@dataclass
class _Slot:
    """One sequence in the KV cache: which prompt it is completing and what it has written so far."""

    index: int
    pos: int  # the position of the next token fed
    generated: int = 0  # tokens chosen so far
    text: str = ""


class BatchCompleter:
    """A GGUF model with a context of ``slots`` sequences of ``slot_ctx`` tokens each; see the module docstring."""

    def __init__(self, path: Path, slots: int = 8, slot_ctx: int = 512, n_threads: int | None = None) -> None:
        if not path.is_file():
            raise ModelNotFoundError(f"No GGUF file at {path}")
        import llama_cpp.llama_cpp as native

        self._native = native
        self.slots = max(1, slots)
        self.slot_ctx = slot_ctx
        _route_native_logs()
        native.llama_backend_init()
        model_params = plain_cpu_params(native.llama_model_default_params())
        self._model = native.llama_model_load_from_file(str(path).encode("utf-8"), model_params)
        if not self._model:
            raise ModelNotFoundError(f"llama.cpp could not load {path}")
        self._vocab = native.llama_model_get_vocab(self._model)
        self.n_vocab = int(native.llama_vocab_n_tokens(self._vocab))
        self._add_bos = bool(native.llama_vocab_get_add_bos(self._vocab))
        params = native.llama_context_default_params()
        params.n_ctx = self.slots * slot_ctx
        params.n_batch = self.slots * slot_ctx  # a pass may hold every slot's whole prompt
        params.n_ubatch = min(512, params.n_batch)
        params.n_seq_max = self.slots + 1  # one more: the shared prefix's own sequence
        params.kv_unified = True  # one cell pool, so every slot can share the prefix's cells
        threads = n_threads or usable_cpus()
        params.n_threads = params.n_threads_batch = threads
        self._ctx = native.llama_init_from_model(self._model, params)
        if not self._ctx:
            native.llama_model_free(self._model)
            raise ModelNotFoundError(f"llama.cpp could not make a {params.n_ctx}-token context for {path}")
        self._memory = native.llama_get_memory(self._ctx)
        self._batch = native.llama_batch_init(params.n_batch, 0, 1)
        self._pieces: dict[int, str] = {}

    def close(self) -> None:
        """Free the batch, context and model (idempotent)."""
        native = self._native
        if getattr(self, "_ctx", None):
            native.llama_batch_free(self._batch)
            native.llama_free(self._ctx)
            native.llama_model_free(self._model)
            self._ctx = self._model = None

    def __enter__(self) -> BatchCompleter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tokens ----------------------------------------------------------------------------------------

    def tokenize(self, text: str, bos: bool = True) -> list[int]:
        """Tokens of ``text`` as plain text (markup that looks like a special token stays text), with the model's
        BOS token first if ``bos`` and the model wants one."""
        data = text.encode("utf-8")
        room = len(data) + 8  # never more tokens than bytes, plus BOS
        buffer = (self._native.llama_token * room)()
        n = self._native.llama_tokenize(self._vocab, data, len(data), buffer, room, bos and self._add_bos, False)
        return list(buffer[:n])

    def piece(self, token: int) -> str:
        """The text of one token (cached: the same few thousand tokens come back all the time)."""
        if token not in self._pieces:
            size = 64
            buffer = ctypes.create_string_buffer(size)
            n = self._native.llama_token_to_piece(self._vocab, token, buffer, size, 0, False)
            if n < 0:  # a longer piece: the API says how long
                buffer = ctypes.create_string_buffer(-n)
                n = self._native.llama_token_to_piece(self._vocab, token, buffer, -n, 0, False)
            self._pieces[token] = buffer.raw[: max(0, n)].decode("utf-8", errors="ignore")
        return self._pieces[token]

    def _is_end(self, token: int) -> bool:
        return bool(self._native.llama_vocab_is_eog(self._vocab, token))

    # -- generation ------------------------------------------------------------------------------------

    def complete(
        self, prompts: Iterable[str], prefix: str = "", max_tokens: int = 32, stop: str = "\n"
    ) -> Iterator[tuple[int, str]]:
        """(prompt index, greedy completion of ``prefix + prompt``) for each prompt, in the order they finish.

        ``prefix`` (e.g. a few-shot transcript) is evaluated once and shared by every slot's KV cells, so a long
        one costs nothing per prompt. A completion ends at an end-of-generation token, at ``stop`` (not
        included) or after ``max_tokens``.
        """
        self._native.llama_memory_clear(self._memory, True)
        shared = self._start_prefix(prefix)
        queue = iter(enumerate(prompts))
        slots: dict[int, _Slot] = {}  # sequence id → its slot
        feed: list[tuple[int, int, int, bool]] = []  # (sequence id, token, position, wants logits)
        while True:
            self._fill(queue, slots, feed, shared, max_tokens)
            if not feed:
                return
            rows = self._decode(feed)
            feed = []
            for seq, row in rows.items():
                slot = slots[seq]
                token = int(np.argmax(row))
                text = self.piece(token)
                ended = self._is_end(token) or (bool(stop) and stop in text)
                slot.text += text[: text.index(stop)] if stop and stop in text else "" if ended else text
                slot.generated += 1
                if ended or slot.generated >= max_tokens:
                    yield slot.index, slot.text
                    self._native.llama_memory_seq_rm(self._memory, seq, -1, -1)
                    del slots[seq]
                else:
                    feed.append((seq, token, slot.pos, True))
                    slot.pos += 1

    def _start_prefix(self, prefix: str) -> int:
        """Evaluate ``prefix`` into the spare sequence id; its length in tokens (0: none)."""
        tokens = self.tokenize(prefix, bos=True) if prefix else []
        if len(tokens) > self.slot_ctx // 2:
            raise ConfigError(
                f"a shared prefix of {len(tokens)} tokens leaves too little of a {self.slot_ctx}-token slot"
            )
        if tokens:
            self._decode([(self.slots, t, p, False) for p, t in enumerate(tokens)])
        return len(tokens)

    def _fill(
        self,
        queue: Iterator[tuple[int, str]],
        slots: dict[int, _Slot],
        feed: list[tuple[int, int, int, bool]],
        shared: int,
        max_tokens: int,
    ) -> None:
        """Start the next prompts in the free sequence ids, each after a copy of the shared prefix (cut to leave
        room for the completion: the end is kept, which is what the completion continues)."""
        for seq in range(self.slots):
            if seq in slots:
                continue
            nxt = next(queue, None)
            if nxt is None:
                return
            index, prompt = nxt
            tokens = self.tokenize(prompt, bos=not shared)
            if not tokens:  # nothing to continue from (the prefix's own last logits are not kept)
                raise ConfigError(f"prompt {index} is empty: every prompt needs text to complete")
            tokens = self._keep_end(tokens, self.slot_ctx - shared - max_tokens - 1, shared)
            if shared:  # the prefix's cells now also belong to this sequence (a unified cache: no copy)
                self._native.llama_memory_seq_cp(self._memory, self.slots, seq, -1, -1)
            feed += [(seq, t, shared + p, p == len(tokens) - 1) for p, t in enumerate(tokens)]
            slots[seq] = _Slot(index, shared + len(tokens))

    def _keep_end(self, tokens: list[int], keep: int, shared: int) -> list[int]:
        """``tokens`` cut to ``keep``: the end stays (what comes next follows it), and so does a BOS the model
        wants first when there is no shared prefix to carry it."""
        if len(tokens) <= keep:
            return tokens
        lead = tokens[:1] if not shared and self._add_bos else []
        return lead + tokens[len(tokens) - keep + len(lead) :]

    # -- scoring ---------------------------------------------------------------------------------------

    def loglikelihood(self, pairs: Iterable[tuple[str, str]], prefix: str = "") -> Iterator[tuple[int, float]]:
        """(pair index, log P(continuation | prefix + context)) for each (context, continuation), in order.

        The sum of the continuation tokens' log-probabilities: for one continuation scored against several
        contexts the token count is the same, so sums rank the contexts the way means would. ``slots`` pairs
        share each forward pass; a context too long for its slot loses its start (as in :meth:`complete`), the
        continuation is kept whole.
        """
        self._native.llama_memory_clear(self._memory, True)
        shared = self._start_prefix(prefix)
        queue = list(enumerate(pairs))
        for start in range(0, len(queue), self.slots):
            feed: list[tuple[int, int, int, bool]] = []
            targets: list[tuple[int, list[int]]] = []  # per sequence: where its rows start in feed, what they predict
            for seq, (index, (context, continuation)) in enumerate(queue[start : start + self.slots]):
                head = self.tokenize(context, bos=not shared)
                tail = self.tokenize(continuation, bos=False)
                if not head or not tail:
                    raise ConfigError(f"pair {index} needs both a context and a continuation")
                room = self.slot_ctx - shared - len(tail)
                if room < 1:
                    raise ConfigError(f"pair {index}: its continuation alone fills a {self.slot_ctx}-token slot")
                tokens = self._keep_end(head, room, shared) + tail
                if shared:
                    self._native.llama_memory_seq_cp(self._memory, self.slots, seq, -1, -1)
                first = len(tokens) - len(tail) - 1  # the row that predicts the continuation's first token
                targets.append((len(feed) + first, tail))
                feed += [(seq, t, shared + p, first <= p < len(tokens) - 1) for p, t in enumerate(tokens)]
            rows = self._decode_rows(feed)
            for seq, (row, tail) in enumerate(targets):
                logits = np.stack(cast(list[np.ndarray], rows[row : row + len(tail)])).astype(np.float64)
                peak = logits.max(axis=1, keepdims=True)
                logz = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
                yield queue[start + seq][0], float((logits[np.arange(len(tail)), tail] - logz).sum())
                self._native.llama_memory_seq_rm(self._memory, seq, -1, -1)

    def _decode(self, feed: list[tuple[int, int, int, bool]]) -> dict[int, np.ndarray]:
        """One forward pass over ``feed``; each sequence's last logits row where logits were asked for."""
        return {seq: row for (seq, *_), row in zip(feed, self._decode_rows(feed)) if row is not None}

    def _decode_rows(self, feed: list[tuple[int, int, int, bool]]) -> list[np.ndarray | None]:
        """One forward pass over ``feed``; the logits row of each entry that asked for one (None otherwise)."""
        batch = self._batch
        for i, (seq, token, pos, logits) in enumerate(feed):  # at most slots × slot_ctx: see _fill
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits
        batch.n_tokens = len(feed)
        status = self._native.llama_decode(self._ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed ({status}) on a pass of {len(feed)} tokens")
        rows: list[np.ndarray | None] = []
        for i, (_, _, _, logits) in enumerate(feed):
            if not logits:
                rows.append(None)
                continue
            pointer: Any = self._native.llama_get_logits_ith(self._ctx, i)
            rows.append(np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)))
        return rows
