"""Plugins: file loaders, embedders and chat runtimes come from entry points, the built-ins included.

A plugin is an installed package that names one function in an entry-point group; Outpost calls it once
per process with a ``register`` callback, and the function registers what it adds::

    # pyproject.toml of a plugin package
    [project.entry-points."outpost.loaders"]
    toy = "outpost_toy:register_loaders"

    # outpost_toy.py
    def register_loaders(register):
        register("toy", [".toy"], extract)        # extract(data: bytes, name: str) -> (title, [Block, ...])

This is simonw/llm's ``register_models(register)`` hook without pluggy: each group has exactly one hook, so a
hook manager would add a dependency and nothing else. What ``register`` takes depends on the group:

- ``outpost.loaders``: ``register(kind, suffixes, extract)`` — files with those suffixes
  (``outpost.ingest.loaders``);
- ``outpost.embedders``: ``register(kind, factory)``, ``factory(model, settings) -> Embedder`` — chosen with
  ``--embed-model KIND:MODEL`` (``outpost.embed.factory``);
- ``outpost.llms``: ``register(kind, factory)``, ``factory(model, settings) -> ChatModel`` — chosen with
  ``--model KIND:MODEL`` (``outpost.models.load``);
- ``outpost.remotes``: ``register(kind, factory)``, ``factory(config, timeout=) -> ChatModel`` — a configured
  remote endpoint of that kind (``outpost.remotes``).

Outpost's own formats and backends register through the same groups from its ``pyproject.toml`` and are loaded
first. What a plugin registers for a key someone registered before it (a suffix, a kind) is not used, with a
warning: installing a package never silently replaces the PDF parser. A plugin that fails to import or to
register is reported once, naming it and its package, and skipped as a whole; the built-ins and the other
plugins still load. This module knows nothing of loaders or models (it sits below them): each group's owner
passes the function that checks a registration and turns it into table entries.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from outpost.errors import ModelNotFoundError
from outpost.names import check_name

__all__ = ["BUILTIN_PACKAGE", "Group", "factory_entries"]

log = logging.getLogger(__name__)

BUILTIN_PACKAGE = "outpost"  # the distribution whose entry points are the built-ins (loaded first)

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., object])
Hook = Callable[[Callable[..., None]], object]  # a plugin's function: hook(register)


def _package(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return str(dist.name) if dist is not None else "?"


def _label(ep: EntryPoint) -> str:
    return f"{ep.name!r} (package {_package(ep)}, {ep.value})"


def _ordered(eps: Iterable[EntryPoint]) -> list[EntryPoint]:
    """Built-ins first, then plugins by package and name, so which registration wins is reproducible."""
    return sorted(eps, key=lambda ep: (_package(ep) != BUILTIN_PACKAGE, _package(ep), ep.name))


class Group(Generic[T]):
    """One entry-point group and the table (key → value) its registrations build, loaded once per process.

    ``entries`` receives exactly what a plugin passes to ``register`` and returns the ``(key, value)`` pairs to
    add; it raises (``TypeError``, ``ValueError``, ``OutpostError``) on a registration it cannot accept, which
    skips that plugin. ``builtin`` is the built-ins' own hook, called directly only when Outpost's entry points
    are missing from the installed metadata (a source tree run without ``pip install -e .``), so the built-ins
    work even then.
    """

    def __init__(
        self, name: str, what: str, entries: Callable[..., Iterable[tuple[str, T]]], builtin: Hook | None = None
    ) -> None:
        self.name = name
        self.what = what  # "loader", "embedder", "chat runtime": said in warnings
        self._entries = entries
        self._builtin = builtin
        self._table: dict[str, T] | None = None
        self._owners: dict[str, str] = {}
        self._lock = threading.Lock()

    def table(self) -> dict[str, T]:
        """Every registered key and its value (loaded on first use; a copy)."""
        with self._lock:
            if self._table is None:
                self._table = self._load()
            return dict(self._table)

    def get(self, key: str) -> T | None:
        return self.table().get(key)

    def choose(self, name: str, default: str) -> tuple[T, str]:
        """``KIND:MODEL`` → (what KIND registered, ``MODEL``); a name without a colon → (``default``'s, name).

        Model names never hold a colon (registry names, Hugging Face ids, paths here), so the colon is free to
        pick a backend: ``--embed-model toy:hash`` asks the ``toy`` embedder for its ``hash`` model.
        """
        kind, colon, model = name.partition(":")
        if not colon:
            kind, model = default, name
        value = self.get(kind)
        if value is None:
            known = ", ".join(sorted(self.table())) or "none"
            raise ModelNotFoundError(
                f"No {self.what} {kind!r} for {name!r} (installed: {known}): install the plugin that provides it "
                f"(it registers in the {self.name!r} entry-point group)"
            )
        return value, model

    def owner(self, key: str) -> str | None:
        """Which plugin registered ``key`` (its entry-point name), for listings and messages."""
        self.table()
        return self._owners.get(key)

    def reload(self) -> None:
        """Forget the table: the next use reads the entry points again (after installing a plugin, in tests)."""
        with self._lock:
            self._table = None
            self._owners = {}

    # -- loading ------------------------------------------------------------------------------

    def _load(self) -> dict[str, T]:
        table: dict[str, T] = {}
        eps = _ordered(entry_points(group=self.name))
        if self._builtin is not None and not any(_package(ep) == BUILTIN_PACKAGE for ep in eps):
            log.debug("no %s entry points from %s: using the built-in hook directly", self.name, BUILTIN_PACKAGE)
            self._merge(table, "builtin", BUILTIN_PACKAGE, self._collect(self._builtin))
        for ep in eps:
            try:
                found = self._collect(ep.load())
            except Exception as exc:  # a broken plugin must never stop the built-ins or the other plugins
                log.warning(
                    "Plugin %s in %s failed and is skipped: %s: %s. Fix it, or `pip uninstall %s`",
                    _label(ep),
                    self.name,
                    type(exc).__name__,
                    exc,
                    _package(ep),
                )
                continue
            self._merge(table, ep.name, _package(ep), found)
        return table

    def _collect(self, hook: object) -> list[tuple[str, T]]:
        """Run one plugin's hook; all its registrations, or an exception (then none of them is used)."""
        if not callable(hook):
            raise TypeError(f"the entry point names {type(hook).__name__}, not a function taking register")
        found: list[tuple[str, T]] = []

        def register(*args: object, **kwargs: object) -> None:
            found.extend(self._entries(*args, **kwargs))

        hook(register)
        return found

    def _merge(self, table: dict[str, T], plugin: str, package: str, found: list[tuple[str, T]]) -> None:
        for key, value in found:
            if key in table:
                log.warning(
                    "Plugin %r (package %s) registers %s %r, which %r registered first: %r's is not used",
                    plugin,
                    package,
                    self.what,
                    key,
                    self._owners[key],
                    plugin,
                )
                continue
            table[key] = value
            self._owners[key] = plugin


def factory_entries(kind: str, factory: F) -> list[tuple[str, F]]:
    """``register(kind, factory)`` (embedders, chat runtimes), checked: a kind is a plain name, without colon."""
    check_name(kind, "plugin kind")
    if not callable(factory):
        raise TypeError(f"kind {kind!r}: the factory must be a function (model: str, settings) -> model")
    return [(kind, factory)]
