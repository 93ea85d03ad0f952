"""Routing policy: whether a question is answered by the local model or a remote one (DESIGN §11).

``Outpost.ask`` calls :meth:`Router.decide` between retrieval and generation, for every caller (CLI, Python
API, both HTTP dialects, dashboard). The decision reads the ``[routing]`` settings, the configured remotes
(``outpost.remotes``) and the collection's sensitivity label (``outpost.labels``):

1. ``mode = "local"`` — nothing is ever sent, not even with ``ask --remote``.
2. The remote is ``routing.remote``, or the only one configured; none → local.
3. Wanted remote? ``mode = "remote"``: always. ``mode = "auto"``: when the user asks (``--remote``), when
   the question and the retrieved sources do not fit the local model's context (the local prompt would
   drop sources), or when local confidence is low: the best evidence sentence for the question (the
   grounding module's evidence score: embedder cosine + key-term coverage, ``outpost.evidence``) scores
   under ``routing.min_evidence`` — the small local model only answers well from a sentence that plainly
   answers the question; a larger model can combine partial evidence.
4. Allowed? Only if the label lets the context go: ``private`` never; ``internal`` only to a ``--trusted``
   remote; ``public`` to any. Otherwise the answer is local and its ``route_reason`` says why.

A remote that is unreachable, fails or stays silent past ``routing.timeout_s`` is given up before anything
is shown, and the local model answers (route ``fallback``). Every decision lands in ``audit.sqlite``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from outpost.audit import AuditEntry, AuditLog, question_hash
from outpost.errors import ConfigError, RemoteError
from outpost.labels import Label, may_send
from outpost.llm.base import ChatModel, GenerationParams, Message
from outpost.rag import pack_sources
from outpost.records import Answer, Source
from outpost.remotes import RemoteConfig, RemoteStore, load_remote
from outpost.settings import RoutingSettings

__all__ = ["Prepared", "Route", "Router"]

log = logging.getLogger(__name__)


@dataclass
class Route:
    """A decision: ``target`` local or remote, and why (``reason``, recorded and shown)."""

    target: str  # "local" | "remote" | "fallback"
    reason: str
    remote: RemoteConfig | None = None  # the remote chosen, or the one a wish for remote was refused
    wanted_remote: bool = False


@dataclass
class Prepared:
    """What generation needs: a model (None: extractive), its prompt, the sources in it, and a started reply."""

    model: ChatModel | None
    messages: list[Message]
    sources: list[Source]
    pieces: Iterable[str] | None = None  # a remote reply already opened (``RemoteReply``)
    usage: dict[str, int] = field(default_factory=dict)  # filled by the remote once done


class Router:
    """The policy over one home: decide, open the remote (or fall back), and audit."""

    def __init__(self, policy: RoutingSettings | dict[str, object], home: Path) -> None:
        # a dict: ``Outpost(routing={...})`` (``with_overrides`` copies without validating); validated here
        self.policy = RoutingSettings.model_validate(policy) if isinstance(policy, dict) else policy
        self.remotes = RemoteStore(home)
        self.audit = AuditLog(home)

    def remote(self) -> RemoteConfig | None:
        """The remote the policy uses: ``routing.remote``, or the only one configured."""
        if self.policy.remote:
            return self.remotes.get(self.policy.remote)
        configured = self.remotes.list()
        if len(configured) > 1:
            names = ", ".join(r.name for r in configured)
            raise ConfigError(f"Several remotes are configured ({names}): set `remote = NAME` under [routing]")
        return configured[0] if configured else None

    def decide(
        self, collection: str, label: Label, *, asked: bool, fits: bool, confidence: Callable[[], float]
    ) -> Route:
        """Local or remote for one question (the module docstring gives the rules, in order)."""
        mode = self.policy.mode
        if mode == "local":
            why = "routing.mode is local: nothing is sent to a remote"
            return Route("local", why if asked else "policy: local", wanted_remote=asked)
        remote = self.remote()
        wish = self._wish(mode, asked, fits, confidence)
        if wish is None:
            return Route("local", "auto: local fits and is confident", remote)
        if remote is None:
            return Route("local", f"{wish}, but no remote is configured (`outpost remote add`)", wanted_remote=True)
        if not may_send(label, remote.trusted):
            whom = "leaves this machine" if label == "private" else f"goes to untrusted remote {remote.name!r}"
            why = f"{wish}, but collection {collection!r} is {label}: its text never {whom}"
            return Route("local", why, remote, wanted_remote=True)
        return Route("remote", wish, remote, wanted_remote=True)

    def _wish(self, mode: str, asked: bool, fits: bool, confidence: Callable[[], float]) -> str | None:
        """Why the question should go remote, or None (``confidence`` is only computed when needed)."""
        if mode == "remote":
            return "policy: remote"
        if asked:
            return "asked (--remote)"
        if not fits:
            return "prompt and sources do not fit the local context"
        score = confidence()
        if score < self.policy.min_evidence:
            return f"low local confidence (best evidence {score:.2f} < {self.policy.min_evidence:g})"
        return None

    def open_remote(
        self, route: Route, question: str, sources: list[Source], params: GenerationParams, system: str | None
    ) -> tuple[Route, Prepared | None]:
        """Pack for the remote and start its reply; on a ``RemoteError``, the route becomes a ``fallback``."""
        assert route.remote is not None
        try:
            model = load_remote(route.remote, self.policy.timeout_s)
            messages, packed = pack_sources(model, question, sources, params.max_tokens, system)
            reply = model.open(messages, params)  # type: ignore[attr-defined]
        except RemoteError as exc:
            log.warning("remote %s failed, answering locally: %s", route.remote.name, exc)
            return replace(route, target="fallback", reason=f"{route.reason}; remote failed: {exc}"), None
        return route, Prepared(model, messages, packed, reply, reply.usage)

    def record(
        self,
        route: Route,
        question: str,
        answer_id: str,
        collections: dict[str, str],
        prepared: Prepared,
    ) -> Callable[[Answer], None]:
        """Write the decision now; return the hook that completes it (tokens, cost) once the answer is done."""
        sent = [s.chunk_id for s in prepared.sources] if route.target == "remote" else []
        entry = AuditEntry(
            answer_id=answer_id,
            question_sha256=question_hash(question),
            question=question if self.policy.log_questions else None,
            mode=self.policy.mode,
            route=route.target,
            remote=route.remote.name if route.remote else None,
            model=prepared.model.name if prepared.model else "extractive",
            reason=route.reason,
            collections=collections,
            chunks_sent=sent,
        )
        row = self.audit.record(entry)
        priced = route.remote or self._priced()

        def done(answer: Answer) -> None:
            answer.route, answer.route_reason = route.target, route.reason
            if prepared.usage:  # the remote's own counts
                answer.usage = dict(prepared.usage)
            tokens_in = answer.usage.get("prompt_tokens", 0)
            tokens_out = answer.usage.get("completion_tokens", answer.usage.get("completion_pieces", 0))
            price = priced.cost(tokens_in, tokens_out) if priced else 0.0
            remote = route.target == "remote"
            self.audit.finish(row, tokens_in, tokens_out, price if remote else 0.0, 0.0 if remote else price)

        return done

    def _priced(self) -> RemoteConfig | None:
        """The remote whose prices value a local answer (what it would have cost): the policy's, if any."""
        try:
            return self.remote()
        except ConfigError:
            return None
