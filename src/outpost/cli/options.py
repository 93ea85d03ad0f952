"""CLI options that set a ``Settings`` field take their help, shown default and bounds from that field.

One source of truth, as llama-cpp-python's server derives its flags from its settings: change a default or a
bound in ``outpost/settings.py`` and every command's ``--help`` follows. The option itself defaults to ``None``
(unset), so ``config.toml`` and ``OUTPOST_*`` still decide when the flag is not given.

    k: Annotated[Optional[int], setting_option("top_k", "-k", "--top-k")] = None
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import annotated_types
import typer
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from outpost.settings import Settings

__all__ = ["default_of", "setting_default", "setting_help", "setting_option"]


def _field(name: str) -> FieldInfo:
    return Settings.model_fields[name]


def setting_default(name: str) -> Any:
    """The default of Settings field ``name`` (``None`` when it is computed, like ``home``)."""
    default = _field(name).default
    return None if default is PydanticUndefined else default


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def setting_help(name: str, text: str | None = None) -> str:
    """``text`` (else the field's description), then the field's default and the setting that holds it."""
    default = setting_default(name)
    shown = f"default {_shown(default)}; " if default is not None else ""
    return f"{(text or _field(name).description or '').rstrip('.')} ({shown}setting {name})."


def _bounds(name: str) -> dict[str, Any]:
    """click's ``min``/``max`` from the field's ``ge``/``le`` (strict ``gt``/``lt`` are left to Settings)."""
    bounds: dict[str, Any] = {}
    for item in _field(name).metadata:
        if isinstance(item, annotated_types.Ge):
            bounds["min"] = item.ge
        elif isinstance(item, annotated_types.Le):
            bounds["max"] = item.le
    return bounds


def setting_option(name: str, *param_decls: str, help: str | None = None, **extra: Any) -> Any:
    """A ``typer.Option`` for Settings field ``name`` (use with a ``None`` default)."""
    return typer.Option(*param_decls, help=setting_help(name, help), **{**_bounds(name), **extra})


def default_of(owner: Callable[..., Any], name: str) -> Any:
    """The default of parameter ``name`` of a function, or of field ``name`` of a dataclass.

    For flags that mirror a core call's own default (``hub train --min-gain``), so the number is written once,
    where the behaviour lives.
    """
    if dataclasses.is_dataclass(owner):
        field = next(f for f in dataclasses.fields(owner) if f.name == name)
        return field.default
    default = inspect.signature(owner).parameters[name].default
    if default is inspect.Parameter.empty:
        raise TypeError(f"{owner.__qualname__}({name}) has no default")
    return default
