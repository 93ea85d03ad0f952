"""llama.cpp runtime through llama-cpp-python, using the model's own chat template and stop tokens.

The prompt is rendered here with the GGUF's ``tokenizer.chat_template`` (Jinja) and tokenised once,
so the token count used for context packing is exactly what the model is fed.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from outpost.cpus import usable_cpus
from outpost.errors import ModelNotFoundError
from outpost.llm.base import ChatModel, GenerationParams, Message

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_types import CreateCompletionStreamResponse

__all__ = ["LlamaCppModel", "load_llama"]

log = logging.getLogger(__name__)

# Used only for a GGUF that carries no chat template of its own.
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# For a GGUF with no chat template and no ChatML tokens either (a base model such as the bundled Gemma 3
# 270M): a plain transcript that it can continue, one line per answer. `Answer:` right under the question,
# not after a blank line: measured on SQuAD, Gemma 3 270M repeats the question otherwise. (Newlines go in
# expressions: the formatter's Jinja environment trims a newline that follows a block tag. The template must
# write BOS itself: the formatter then tokenises without adding one, and Gemma without BOS mostly echoes.)
PLAIN = (
    "{{ bos_token }}{% for message in messages %}{% if not loop.first %}{{ '\\n\\n' }}{% endif %}"
    "{% if message['role'] == 'assistant' %}Answer: {% endif %}{{ message['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '\\nAnswer:' }}{% endif %}"
)
PLAIN_STOP = ["\n"]


def plain_cpu_params(params: Any) -> Any:
    """llama.cpp model params without the extra CPU buffer types (see :func:`_plain_cpu_buffers` for why)."""
    params.use_extra_bufts = False
    return params


@contextmanager
def _plain_cpu_buffers() -> Iterator[None]:
    """Load weights without llama.cpp's extra CPU buffer types (AMX / repacked layouts).

    Why: with llama-cpp-python 0.3.36 on this CPU (AVX-512 + AMX), the first generation from either bundled
    model (SmolLM2 Q4_1, Gemma 3 Q4_K_M) segfaults in that path; the plain buffers are correct everywhere.
    llama-cpp-python has no argument for it, so the default model params are adjusted for one load
    (callers load under the factory's lock).
    """
    import llama_cpp.llama_cpp as native  # the module `Llama` reads its default model params from, at load time

    original = native.llama_model_default_params

    def plain() -> Any:
        return plain_cpu_params(original())

    native.llama_model_default_params = plain
    try:
        yield
    finally:
        native.llama_model_default_params = original


@functools.cache
def _route_native_logs() -> object:
    """Send llama.cpp's own log lines to Python logging (``outpost.llm.llama_cpp``, DEBUG), not to stderr.

    Why: llama-cpp-python's callback prints every line llama.cpp tags as an error even with ``verbose=False``,
    and llama.cpp tags routine notes that way (Gemma 3: ``llama_kv_cache_iswa: using full-size SWA cache``),
    so they appeared in the middle of a CLI answer. They stay readable with DEBUG logging on. Installed once,
    after ``llama_cpp.llama`` (whose import installs its own callback); the returned callback is kept alive
    by the cache, since llama.cpp calls it for as long as the process runs.
    """
    import llama_cpp
    import llama_cpp.llama  # noqa: F401  (installs llama-cpp-python's callback, which this one replaces)

    native = logging.getLogger("outpost.llm.llama_cpp")

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def forward(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if native.isEnabledFor(logging.DEBUG):
            native.debug("%s", text.decode("utf-8", errors="replace").rstrip("\n"))

    llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))
    return forward


def load_llama(path: Path, **options: Any) -> Llama:
    """A ``llama_cpp.Llama`` for ``path``, loaded the one way Outpost loads GGUF files (answering, the hub's
    held-out judge): llama.cpp's log lines routed to Python logging, CPU buffers without the extra buffer types
    that crashed llama.cpp 0.3.36 on this CPU, and ``verbose=False``."""
    from llama_cpp import Llama

    _route_native_logs()
    with _plain_cpu_buffers():
        return Llama(model_path=str(path), verbose=False, **options)


class _TokenLogprobs:
    """A llama.cpp logits processor that only reads: each generated token's log-probability, into ``out``.

    llama-cpp-python reports log-probabilities only for a context built with ``logits_all`` (a score row per
    context position: 2 GB for Gemma 3's 262k-token vocabulary at 2,048 positions). A processor sees each
    step's scores instead, before sampling; the token chosen from them is the last input of the next step,
    so each token is scored one step later — and the token that ends the reply (end of text, a stop
    sequence, the length limit) is never fed back, so it is never counted. Cost: one log-softmax over the
    vocabulary per token (~1 ms for 262k entries), against 20–50 ms to generate it on a laptop CPU.
    """

    def __init__(self, out: list[float]) -> None:
        self.out = out
        self.previous: npt.NDArray[np.float64] | None = None

    def __call__(self, input_ids: npt.NDArray[np.intc], scores: npt.NDArray[np.single]) -> npt.NDArray[np.single]:
        if self.previous is not None:
            self.out.append(float(self.previous[int(input_ids[-1])]))
        logits = scores.astype(np.float64)
        top = logits.max()
        self.previous = logits - top - np.log(np.exp(logits - top).sum())
        return scores


class LlamaCppModel(ChatModel):
    """A GGUF model loaded once; ``n_ctx`` set explicitly (llama.cpp's 512 default is too small for RAG)."""

    def __init__(
        self,
        path: Path,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        name: str = "",
        lora: str | None = None,
        n_gpu_layers: int = 0,
    ) -> None:
        """``n_gpu_layers``: layers llama.cpp offloads to a GPU (-1: all), from the hardware advisor's plan for
        this file and context (``models/load.py`` asks it: this package never imports ``models/``); 0 keeps
        the model on the CPU, which is all a CPU build of llama.cpp does anyway."""
        if not path.is_file():
            raise ModelNotFoundError(f"No GGUF file at {path}")
        try:
            import llama_cpp  # noqa: F401
        except ImportError as exc:  # pragma: no cover - a broken install
            raise ModelNotFoundError("llama-cpp-python is not installed: pip install llama-cpp-python") from exc
        self.path = path
        self.name = name or path.stem
        self._lock = threading.Lock()
        self.llm = load_llama(
            path, n_ctx=n_ctx, n_threads=n_threads or usable_cpus(), n_gpu_layers=n_gpu_layers, lora_path=lora
        )
        self.n_ctx = self.llm.n_ctx()
        trained = int(self.llm.metadata.get(f"{self.architecture}.context_length", self.n_ctx) or self.n_ctx)
        if self.n_ctx > trained:
            log.warning("n_ctx %d exceeds the %d tokens %s was trained on", self.n_ctx, trained, self.name)

    @property
    def architecture(self) -> str:
        return str(self.llm.metadata.get("general.architecture", ""))

    @cached_property
    def _formatter(self) -> Any:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        eos_id, bos_id = self.llm.token_eos(), self.llm.token_bos()
        return Jinja2ChatFormatter(
            template=self.llm.metadata.get("tokenizer.chat_template") or (PLAIN if self._plain else CHATML),
            eos_token=self._token_text(eos_id),
            bos_token=self._token_text(bos_id),
            stop_token_ids=[eos_id],
        )

    @cached_property
    def _plain(self) -> bool:
        """No chat template and no ChatML tokens: a base model, prompted as a plain transcript."""
        if self.llm.metadata.get("tokenizer.chat_template"):
            return False
        return len(self.llm.tokenize(b"<|im_start|>", add_bos=False, special=True)) != 1

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

    def _render(self, messages: list[Message]) -> tuple[list[int], list[str]]:
        """Prompt tokens and stop strings for ``messages`` under the model's chat template."""
        result = self._formatter(messages=messages)
        tokens = self.llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
        stop = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        return tokens, [s for s in stop if s] + (PLAIN_STOP if self._plain else [])

    def prompt_tokens(self, messages: list[Message]) -> int:
        return len(self._render(messages)[0])

    def stream(
        self, messages: list[Message], params: GenerationParams, extra_stop: list[str] | None = None
    ) -> Iterator[str]:
        yield from self._stream(messages, params, extra_stop, None)

    def stream_scored(
        self,
        messages: list[Message],
        params: GenerationParams,
        logprobs: list[float],
        extra_stop: list[str] | None = None,
    ) -> Iterator[str]:
        yield from self._stream(messages, params, extra_stop, logprobs)

    def _stream(
        self,
        messages: list[Message],
        params: GenerationParams,
        extra_stop: list[str] | None,
        logprobs: list[float] | None,
    ) -> Iterator[str]:
        tokens, stop = self._render(messages)  # rendered once: checked and generated from the same tokens
        self.ensure_room(len(tokens))
        yield from self._locked(tokens, [*stop, *params.stop, *(extra_stop or [])], params, logprobs)

    def stream_raw(self, prompt: str, params: GenerationParams, stop: list[str] | None = None) -> Iterator[str]:
        tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
        self.ensure_room(len(tokens))
        yield from self._locked(tokens, [*(stop or []), *params.stop], params)

    def _locked(
        self, tokens: list[int], stop: list[str], params: GenerationParams, logprobs: list[float] | None = None
    ) -> Iterator[str]:
        room = self.n_ctx - len(tokens)
        with self._lock:  # one generation at a time per llama.cpp context; others queue here
            yield from self._generate(tokens, stop, room, params, logprobs)

    def _generate(
        self, tokens: list[int], stop: list[str], room: int, params: GenerationParams, logprobs: list[float] | None
    ) -> Iterator[str]:
        self.llm.reset()  # type: ignore[no-untyped-call]  # llama-cpp-python leaves reset() unannotated
        from llama_cpp import LogitsProcessorList

        scoring = None if logprobs is None else LogitsProcessorList([_TokenLogprobs(logprobs)])
        completion = self.llm.create_completion(
            tokens,
            max_tokens=min(params.max_tokens, room),
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            min_p=params.min_p,
            repeat_penalty=params.repeat_penalty,
            seed=params.seed,
            stop=stop,
            stream=True,
            logits_processor=scoring,
        )
        pieces = cast("Iterator[CreateCompletionStreamResponse]", completion)  # stream=True: never one response
        try:
            for piece in pieces:
                text = piece["choices"][0]["text"]
                if text:
                    yield text
        finally:  # also when a client stops reading mid-answer (this generator is closed): still under the lock
            getattr(completion, "close", lambda: None)()
            self._free_sampler()

    def _free_sampler(self) -> None:
        """Free the sampler chain llama-cpp-python built for this generation now, not at some later GC.

        Why: ``Llama.generate`` builds a new ``LlamaSampler`` per generation and only drops the previous one, but a
        ``LlamaSampler`` sits in a reference cycle (its ``ExitStack`` callback holds it), so its native chain —
        about 12 bytes per vocabulary entry: 3 MB for Gemma 3's 262k tokens — is freed only when Python's cyclic
        GC collects its oldest generation, which a busy `outpost serve` rarely does: RSS rose ~3 MB per answer
        (docs/reliability.md, fix 13). Called under ``self._lock``, after the completion's last piece.
        """
        sampler = getattr(self.llm, "_sampler", None)
        if sampler is not None:
            sampler.close()
            self.llm._sampler = None
