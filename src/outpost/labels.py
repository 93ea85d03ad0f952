"""Sensitivity labels on collections: what a collection's text may be sent to (``docs/routing.md``).

    private    never leaves this machine (the default: a collection nobody labelled is private)
    internal   may go to remotes marked ``--trusted`` (your own GPU server, a contracted endpoint)
    public     may go to any configured remote

The label lives in the collection's store meta (``x:label``); a collection synced from a hub takes the
hub's label at every sync, so the hub's owner decides for what it ships.
"""

from __future__ import annotations

from typing import Literal, cast

from outpost.errors import ConfigError, PackError
from outpost.names import shown
from outpost.store.sqlite import Store

__all__ = ["LABELS", "Label", "adopt_label", "check_label", "hub_label", "label_of", "may_send", "set_label"]

Label = Literal["private", "internal", "public"]
LABELS: tuple[Label, ...] = ("private", "internal", "public")
DEFAULT_LABEL: Label = "private"


def check_label(value: object) -> Label:
    """``value`` if it is a label, else a ``ConfigError`` that lists the three."""
    if value not in LABELS:
        raise ConfigError(f"Unknown sensitivity label {shown(value)}: use one of {', '.join(LABELS)}")
    return value


def label_of(store: Store) -> Label:
    """The collection's label; missing (never labelled, or synced from an older hub) means ``private``."""
    raw = store.get_meta("label")
    return raw if raw in LABELS else DEFAULT_LABEL


def set_label(store: Store, label: str) -> Label:
    checked = check_label(label)
    store.set_meta(label=checked)
    return checked


def may_send(label: Label, trusted: bool) -> bool:
    """Whether text of a collection with ``label`` may go to a remote (``trusted``: marked ``--trusted``)."""
    return label == "public" or (label == "internal" and trusted)


def hub_label(plan: object) -> Label:
    """The label a hub sent with a sync plan (``label``); a hub from before labels sends none: ``private``.

    Anything else is refused (``PackError``): a label is a promise about where text may go, so a garbled one
    must not be guessed at.
    """
    raw = plan.get("label") if isinstance(plan, dict) else None
    if raw is not None and raw not in LABELS:
        raise PackError(f"The hub sent sensitivity label {shown(raw)}; expected one of {', '.join(LABELS)}")
    return cast(Label, raw or DEFAULT_LABEL)


def adopt_label(store: Store, label: Label) -> None:
    """Give a synced collection its hub's label (after a sync succeeded: a refused hub changes nothing)."""
    if store.get_meta("label") != label:
        store.set_meta(label=label)
