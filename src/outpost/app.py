"""``Outpost``: the Python API over the local data path, for notebooks and for the CLI.

    >>> from outpost import Outpost
    >>> op = Outpost()                                   # OUTPOST_HOME or the per-user data dir
    >>> op.ingest("~/docs", collection="handbook")
    >>> ans = op.ask("How many vacation days do new hires get?", collection="handbook")
    >>> ans.text, ans.sources
    >>> for piece in op.ask("...", collection="handbook", stream=True): print(piece, end="")

It holds one settings object and caches open stores and loaded models, so repeated calls are cheap.
"""

from __future__ import annotations

import threading
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, overload

from outpost.embed.base import Embedder
from outpost.embed.encoders import encoder_for
from outpost.embed.factory import load_embedder
from outpost.errors import ContextOverflowError, ModelNotFoundError, ReadOnlyError
from outpost.evidence import find_evidence
from outpost.feedback import FeedbackQueue
from outpost.ingest.chunker import Chunker
from outpost.ingest.discover import discover
from outpost.ingest.limits import ReadLimits
from outpost.ingest.pipeline import IngestReport, Progress, ingest
from outpost.labels import Label, label_of, set_label
from outpost.llm.base import ChatModel, GenerationParams
from outpost.models.load import load_chat_model
from outpost.rag import AnswerStream, pack_sources, to_sources
from outpost.records import Answer, CollectionInfo, Hit, Source
from outpost.retrieve import Mode, Retriever
from outpost.routing import Prepared, Route, Router
from outpost.settings import Settings
from outpost.store.collections import Collections
from outpost.store.sqlite import Store, check_collection_name

__all__ = ["Outpost"]

DEFAULT_COLLECTION = "default"


class Outpost:
    """Local ingest, search and answers over collections in one home folder."""

    def __init__(self, home: str | Path | None = None, settings: Settings | None = None, **overrides: Any) -> None:
        """``home`` (else ``$OUTPOST_HOME``) with its ``config.toml``; or ``settings`` as given. Keyword
        overrides win over both; ``None`` ones (unset CLI flags) are ignored."""
        if home is not None:
            overrides["home"] = Path(home).expanduser()
        if settings is None:  # built here, so the config.toml read is the one in the home asked for
            self.settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
        else:
            self.settings = settings.with_overrides(**overrides)
        self._stores: dict[str, Store] = {}
        self._stores_lock = threading.Lock()  # a server's first concurrent requests open one store, not one each
        self._collections = Collections(self.settings.collections_dir, exact_below=self.settings.exact_search_below)

    # -- collections --------------------------------------------------------------------------

    def store(self, name: str, create: bool = False) -> Store:
        """The open store of a collection; a missing one raises ``CollectionNotFoundError`` unless ``create``."""
        check_collection_name(name)
        with self._stores_lock:
            if name not in self._stores:
                self._stores[name] = self._collections.open(name, create=create)
            return self._stores[name]

    def collections(self) -> list[CollectionInfo]:
        return [self.store(name).info() for name in self._collections.names()]

    def has_collection(self, name: str) -> bool:
        """On disk right now (an open store may outlive a folder deleted behind this process's back)."""
        return self._collections.exists(name)

    def label(self, name: str, label: str | None = None) -> Label:
        """The collection's sensitivity label (``outpost.labels``); with ``label``, set it first.

        A synced collection's label is the hub's (it is set again at every sync), so it cannot be changed here.
        """
        store = self.store(name)
        if label is not None:
            origin = store.get_meta("hub")
            if origin:
                raise ReadOnlyError(f"Collection {name!r} is synced from {origin}; its label is set by the hub")
            return set_label(store, label)
        return label_of(store)

    def delete_collection(self, name: str) -> None:
        with self._stores_lock:
            store = self._stores.pop(name, None)
        if store is not None:
            store.close()
        self._collections.delete(name)

    # -- ingest -------------------------------------------------------------------------------

    def embedder(self) -> Embedder:
        return load_embedder(self.settings)

    def chunker(self, embedder: Embedder) -> Chunker:
        limit = min(self.settings.chunk_tokens, embedder.max_tokens)
        return Chunker(embedder.count_tokens, limit, self.settings.chunk_overlap, embedder.identity.name)

    def ingest(
        self,
        *paths: str | Path,
        collection: str = DEFAULT_COLLECTION,
        sync: bool = False,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Ingest files and folders into ``collection`` (created if new); ``sync`` also removes vanished files.

        A collection synced from a hub is refused (``ReadOnlyError``, saying to ingest on the hub), whichever
        embedder it uses: the hub is its only writer, a local version would break the next delta, and a hub's
        fine-tuned collection (issue 15) is re-embedded there as a whole. Any other collection embeds new chunks
        with the embedder its identity names (``collection_embedder``: the shipped encoder installed in
        ``encoders/<sha256>/``, else the settings' model, which must then match: ``ModelMismatchError``), and is
        chunked by the settings' model, as on the hub, so chunk ids stay the base model's.
        """
        files = discover([Path(p) for p in paths])
        store = self.store(collection, create=True)
        origin = store.get_meta("hub")
        if origin:
            raise ReadOnlyError(
                f"Collection {collection!r} is synced from {origin} and read-only here; ingest on the hub, "
                "or into another local collection"
            )
        base = self.embedder()
        limits = ReadLimits.from_settings(self.settings)
        return ingest(store, files, self.collection_embedder(store, base), self.chunker(base), sync, progress, limits)

    def collection_embedder(self, store: Store, default: Embedder | None = None) -> Embedder:
        """The embedder ``store``'s vectors come from, for its queries and its new chunks alike: the encoder its
        identity names when ``encoders/`` holds it (``encoder_for``: a hub's fine-tuned one, installed by sync;
        loaded once per process), else ``default`` (the settings' embedder)."""
        return encoder_for(self.settings.home, store.embedding) or default or self.embedder()

    # -- retrieval and answers ----------------------------------------------------------------

    def retriever(self, collection: str) -> Retriever:
        """Search ``collection`` with the encoder its identity names (a hub's fine-tuned one, installed by sync in
        ``encoders/``, loaded once per process), else with the settings' embedder."""
        store = self.store(collection)
        embedder = self.collection_embedder(store)
        store.check_embedding(embedder.identity)
        s = self.settings
        return Retriever(store, embedder, s.rrf_k, s.bm25_weight, s.dense_weight)

    def search(
        self, query: str, collection: str = DEFAULT_COLLECTION, k: int | None = None, mode: Mode = "hybrid"
    ) -> list[Hit]:
        return self.retriever(collection).search(query, k or self.settings.top_k, mode)

    def chat_model(self, name: str | None = None) -> ChatModel:
        return load_chat_model(self.settings, name)

    def _answer_model(self, name: str | None, extractive: bool) -> tuple[ChatModel | None, str]:
        """The chat model to answer with, or (None, why) to answer with the evidence alone.

        A model the caller named must load (an error otherwise); the default one may be missing, and then
        the answer is extractive and says so, rather than no answer at all.
        """
        if extractive:
            return None, ""
        try:
            return self.chat_model(name), ""
        except ModelNotFoundError as exc:
            if name is not None:
                raise
            return None, f"No chat model could load ({exc}); answering with the best source sentences alone."

    @overload
    def ask(
        self,
        question: str,
        collection: str = ...,
        *,
        stream: Literal[False] = ...,
        k: int | None = ...,
        mode: Mode = ...,
        model: str | None = ...,
        temperature: float | None = ...,
        max_tokens: int | None = ...,
        seed: int | None = ...,
        extractive: bool = ...,
        check: bool | None = ...,
        chat: ChatModel | None = ...,
        params: GenerationParams | None = ...,
        system: str | None = ...,
        remote: bool = ...,
    ) -> Answer: ...
    @overload
    def ask(
        self,
        question: str,
        collection: str = ...,
        *,
        stream: Literal[True],
        k: int | None = ...,
        mode: Mode = ...,
        model: str | None = ...,
        temperature: float | None = ...,
        max_tokens: int | None = ...,
        seed: int | None = ...,
        extractive: bool = ...,
        check: bool | None = ...,
        chat: ChatModel | None = ...,
        params: GenerationParams | None = ...,
        system: str | None = ...,
        remote: bool = ...,
    ) -> AnswerStream: ...

    def ask(
        self,
        question: str,
        collection: str = DEFAULT_COLLECTION,
        *,
        stream: bool = False,
        k: int | None = None,
        mode: Mode = "hybrid",
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        extractive: bool = False,
        check: bool | None = None,
        chat: ChatModel | None = None,
        params: GenerationParams | None = None,
        system: str | None = None,
        remote: bool = False,
    ) -> Answer | AnswerStream:
        """Answer from the collection's top chunks; ``stream=True`` returns an iterable ``AnswerStream``.

        The one answering path (DESIGN §11): retrieve and pack, route, generate, then ground —
        evidence and a per-sentence check (``check``, default: the ``grounding`` setting) — for the CLI, the
        Python API, both HTTP dialects and the dashboard alike. ``extractive=True`` answers with the best
        source sentences and no LLM, as happens by itself when the default chat model cannot load. The
        HTTP API passes its own loaded ``chat`` model and ``params``; ``system`` replaces the instructions.
        Between retrieval and generation the routing policy (``outpost.routing``) may send the question and
        the sources its label allows to a remote model instead (``remote=True``: the user asks for it);
        the decision is audited and the answer's ``route``/``route_reason`` say what happened.
        """
        s = self.settings
        notice = ""
        if chat is None:
            chat, notice = self._answer_model(model, extractive)
        params = params or GenerationParams(
            temperature=s.temperature if temperature is None else temperature,
            max_tokens=max_tokens or s.max_tokens,
            seed=seed,
            repeat_penalty=1.0,  # an answer should quote its sources; a penalty on repeats works against that
        )
        retriever = self.retriever(collection)
        query = retriever.embedder.embed_query(question)
        found = to_sources(retriever.search(question, k or s.top_k, mode, query=query))
        label = label_of(self.store(collection))
        asked: bool | None = None if extractive else remote  # None: extractive was asked for, no model at all
        route, ready = self._route(question, collection, label, found, chat, params, system, asked)
        answer_id = self.feedback.record(collection, question, query, [src.chunk_id for src in ready.sources])
        answer = AnswerStream(
            ready.model,
            question,
            ready.messages,
            ready.sources,
            params,
            collection,
            id=answer_id,
            embedder=retriever.embedder,  # the loaded instance retrieval used
            check=s.grounding if check is None else check,
            notice=notice,
            pieces=ready.pieces,
            on_done=self.router.record(route, question, answer_id, {collection: label}, ready),
        )
        return answer if stream else answer.result()

    @cached_property
    def router(self) -> Router:
        return Router(self.settings.routing, self.settings.home)

    def _route(
        self,
        question: str,
        collection: str,
        label: Label,
        found: list[Source],
        chat: ChatModel | None,
        params: GenerationParams,
        system: str | None,
        asked: bool | None,
    ) -> tuple[Route, Prepared]:
        """Pack for the local model, let the policy decide, and open the remote when it says so (or fall back).

        ``asked`` None: the caller wants the extractive answer, which never involves a model, remote or not.
        """
        if asked is None:
            return Route("local", "extractive: no model asked for"), self._pack(None, question, found, 0, system)
        try:
            local = self._pack(chat, question, found, params.max_tokens, system)
        except ContextOverflowError:  # the question alone is too long here: a remote may still take it
            if self.settings.routing.mode == "local":
                raise
            local = None
        embedder = self.embedder()
        route = self.router.decide(
            collection,
            label,
            asked=asked,
            fits=local is not None and len(local.sources) == len(found),
            confidence=lambda: max((e.score for e in find_evidence(question, found, embedder)), default=0.0),
        )
        if route.target == "remote":
            route, opened = self.router.open_remote(route, question, found, params, system)
            if opened is not None:
                return route, opened
        if local is None:
            self._pack(chat, question, found, params.max_tokens, system)  # raises the overflow, said plainly
        assert local is not None
        return route, local

    def _pack(
        self, chat: ChatModel | None, question: str, found: list[Source], max_tokens: int, system: str | None
    ) -> Prepared:
        if chat is None:  # extractive: no prompt, every retrieved source
            return Prepared(None, [], found)
        count = self.settings.prompt_sentences  # extractive-first: the best sentences, not whole chunks
        evidence = find_evidence(question, found, self.embedder())[:count] if count else None
        messages, sources = pack_sources(chat, question, found, max_tokens, system, evidence)
        return Prepared(chat, messages, sources)

    # -- feedback -----------------------------------------------------------------------------

    @cached_property
    def feedback(self) -> FeedbackQueue:
        return FeedbackQueue(self.settings.home)

    def vote(self, answer: Answer | str, helpful: bool | None = None, sources: dict[int, bool] | None = None) -> None:
        """Record a vote on an answer (and/or its sources by number); ``outpost sync`` uploads it."""
        self.feedback.vote(answer.id if isinstance(answer, Answer) else answer, helpful, sources)
