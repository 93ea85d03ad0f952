"""The chat-model interface every runtime implements (llama.cpp now; remote APIs later).

Generation takes a list of chat messages, not one string, so chat history, a Modelfile's
``SYSTEM``/``MESSAGE`` and the HTTP APIs all share one path.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass

from outpost.errors import ContextOverflowError

__all__ = ["ChatModel", "GenerationParams", "Message"]

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


@dataclass(frozen=True)
class GenerationParams:
    """How to sample one reply. ``top_k`` and ``min_p`` default to llama.cpp's own defaults, so a request
    that sets neither samples as before; ``stop`` sequences add to the ones the chat template brings."""

    temperature: float = 0.2
    max_tokens: int = 384
    top_p: float = 0.95
    repeat_penalty: float = 1.1
    seed: int | None = None
    top_k: int = 40  # 0: no top-k cut
    min_p: float = 0.05  # 0: no min-p cut
    stop: tuple[str, ...] = ()


class ChatModel(abc.ABC):
    """A loaded chat model with a fixed context window."""

    name: str
    n_ctx: int

    @abc.abstractmethod
    def prompt_tokens(self, messages: list[Message]) -> int:
        """Tokens the rendered prompt (chat template applied) takes in the context window."""

    @abc.abstractmethod
    def stream(
        self, messages: list[Message], params: GenerationParams, extra_stop: list[str] | None = None
    ) -> Iterator[str]:
        """Yield the reply as text pieces, as they are generated."""

    def stream_scored(
        self,
        messages: list[Message],
        params: GenerationParams,
        logprobs: list[float],
        extra_stop: list[str] | None = None,
    ) -> Iterator[str]:
        """:meth:`stream`, also appending to ``logprobs`` each generated token's log-probability under the model.

        Why: how sure the model was of its own reply is the one signal a grounding check cannot read off the
        sources — a small model that copies the wrong phrase of the right sentence mostly does so unsure
        (``outpost.evidence``, confidence). The values are the model's own distribution (before temperature or
        other sampling settings), one per token the reply is made of, the token that ended it excluded. A
        runtime that cannot tell (this default: a plugin's, a remote API's) leaves the list empty, and the
        check then goes without it.
        """
        return self.stream(messages, params, extra_stop)

    def stream_raw(self, prompt: str, params: GenerationParams, stop: list[str] | None = None) -> Iterator[str]:
        """Plain text completion of ``prompt``, no chat template (``/v1/completions``, ``raw`` generate)."""
        raise NotImplementedError(f"{type(self).__name__} does not support raw completion")

    def check_prompt(self, messages: list[Message], reserve: int = 16) -> int:
        """Tokens the prompt takes; a clear error if it leaves no room to answer."""
        return self.ensure_room(self.prompt_tokens(messages), reserve)

    def ensure_room(self, used: int, reserve: int = 16) -> int:
        """``used`` back, or a clear error if a prompt of that many tokens leaves no room to answer."""
        if used + reserve > self.n_ctx:
            raise ContextOverflowError(
                f"The prompt takes {used} tokens of {self.name}'s {self.n_ctx}-token context; "
                "shorten it or raise the context"
            )
        return used

    def default_params(self, base: GenerationParams) -> GenerationParams:
        """Generation defaults for this model (a Modelfile's PARAMETERs override the settings')."""
        return base

    def complete(self, messages: list[Message], params: GenerationParams) -> str:
        return "".join(self.stream(messages, params))
