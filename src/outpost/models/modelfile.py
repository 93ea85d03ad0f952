"""Ollama's Modelfile syntax, so ``outpost models create NAME -f Modelfile`` derives a model.

A derived model is the base GGUF (shared, never copied) plus an overlay: a system prompt, a
message history and default parameters. Users bring Modelfiles written for Ollama, so this follows
Ollama's documented syntax (docs/modelfile.md) and its parser's behaviour::

    # comment                        only at the start of a line; '#' inside a value is kept
    FROM llama3.2                    required: a model name, or a .gguf file or folder
    PARAMETER temperature 1          typed per name; unknown names are rejected, like Ollama does
    PARAMETER stop "<|eot_id|>"      stop may repeat and accumulates
    TEMPLATE \"\"\"{{ .Prompt }}\"\"\"     SYSTEM, TEMPLATE: the last one wins
    SYSTEM You are Mario...
    ADAPTER ./lora.gguf              LICENSE, ADAPTER and MESSAGE may repeat
    MESSAGE user Is Toronto in Canada?

Values are the rest of the line, or ``"..."`` / ``\"\"\"...\"\"\"`` (either may span lines; Ollama
has no escapes, so a value ends at the first line that ends with its closing quote).
Instructions, parameter names and message roles are case-insensitive.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from outpost.errors import ConfigError
from outpost.llm.base import GenerationParams, Message

__all__ = ["APPLIED_PARAMETERS", "PARAMETER_TYPES", "ROLES", "Modelfile", "load_modelfile", "parse_modelfile"]

ROLES = ("system", "user", "assistant")

# Ollama's api.Options json tags, plus the parameters it deprecated but still documents and
# accepts (mirostat*, tfs_z, penalize_newline, ...): keeping them lets old Modelfiles load.
PARAMETER_TYPES: Mapping[str, type] = {
    **dict.fromkeys(
        (
            "num_ctx",
            "num_batch",
            "num_gpu",
            "main_gpu",
            "num_thread",
            "num_keep",
            "num_predict",
            "draft_num_predict",
            "repeat_last_n",
            "seed",
            "top_k",
            "mirostat",
            "num_gqa",
        ),
        int,
    ),
    **dict.fromkeys(
        (
            "temperature",
            "top_p",
            "min_p",
            "typical_p",
            "repeat_penalty",
            "presence_penalty",
            "frequency_penalty",
            "mirostat_eta",
            "mirostat_tau",
            "tfs_z",
        ),
        float,
    ),
    **dict.fromkeys(
        ("penalize_newline", "use_mmap", "use_mlock", "numa", "low_vram", "f16_kv", "vocab_only", "logits_all"),
        bool,
    ),
    "stop": list,
}
# The parameters a derived model applies (``generation_params``, ``n_ctx``, the stop list); ``unused()`` names
# the others.
APPLIED_PARAMETERS = frozenset(
    {"temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed", "num_predict", "num_ctx", "stop"}
)

_INSTRUCTIONS = ("from", "parameter", "template", "system", "adapter", "license", "message")
_OLLAMA_ONLY = ("draft", "renderer", "parser", "requires")  # valid for Ollama, meaningless here
_HEAD = re.compile(r"([^ \t]+)(?:[ \t]+(.*))?")  # INSTRUCTION arguments
_WORD_THEN_VALUE = re.compile(r"([^ \t]+)[ \t]+(.*)")  # PARAMETER name value / MESSAGE role content
_INT = re.compile(r"[+-]?[0-9]+")  # what Go's strconv.ParseInt accepts (no '_', no spaces)
_TRUE = ("1", "t", "T", "true", "TRUE", "True")  # Go's strconv.ParseBool
_FALSE = ("0", "f", "F", "false", "FALSE", "False")


@dataclass(frozen=True)
class Modelfile:
    """A parsed Modelfile: what a derived model adds to its base."""

    from_: str
    parameters: dict[str, object] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    adapters: list[str] = field(default_factory=list)
    license: list[str] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)

    def to_text(self) -> str:
        """The Modelfile as text; ``parse_modelfile(m.to_text()) == m`` (it is what the registry stores)."""
        lines = [f"FROM {_quote(self.from_, 'FROM')}"]
        lines += [f"ADAPTER {_quote(a, 'ADAPTER')}" for a in self.adapters]
        if self.template is not None:
            lines.append(f"TEMPLATE {_quote(self.template, 'TEMPLATE')}")
        if self.system is not None:
            lines.append(f"SYSTEM {_quote(self.system, 'SYSTEM')}")
        for name, value in self.parameters.items():
            values = value if name == "stop" and isinstance(value, list) else [value]
            lines += [f"PARAMETER {name} {_quote(_format(v), name)}" for v in values]
        lines += [f"MESSAGE {m['role']} {_quote(m['content'], 'MESSAGE')}" for m in self.messages]
        lines += [f"LICENSE {_quote(text, 'LICENSE')}" for text in self.license]
        return "\n".join(lines) + "\n"

    def generation_params(self, base: GenerationParams) -> GenerationParams:
        """``base`` with this Modelfile's defaults on top; the rest stay in ``parameters`` only."""
        p = self.parameters

        def number(name: str, default: float) -> float:
            return _as_float(p[name]) if name in p else default

        seed = base.seed
        if "seed" in p:
            seed = _as_int(p["seed"])
            seed = seed if seed >= 0 else None  # Ollama/llama.cpp: -1 means a random seed
        # -1 (infinite) and -2 (fill the context) keep the base budget: answers must leave room for sources
        predict = _as_int(p["num_predict"]) if "num_predict" in p else 0
        return replace(
            base,
            temperature=number("temperature", base.temperature),
            top_p=number("top_p", base.top_p),
            min_p=number("min_p", base.min_p),
            repeat_penalty=number("repeat_penalty", base.repeat_penalty),
            top_k=_as_int(p["top_k"]) if "top_k" in p else base.top_k,
            seed=seed,
            max_tokens=predict if predict > 0 else base.max_tokens,
        )

    def unused(self) -> list[str]:
        """What this Modelfile says that Outpost accepts but does not apply, as one warning each.

        Why: a Modelfile written for Ollama must load (so these are not errors), but a user who set a TEMPLATE
        or ``PARAMETER mirostat`` should learn that it changes nothing rather than find out from the answers.
        """
        notes = []
        if self.template is not None:
            notes.append(
                "TEMPLATE is not used: Outpost renders prompts with the model's own chat template "
                "(the GGUF's tokenizer.chat_template), never a Go template"
            )
        ignored = sorted(name for name in self.parameters if name not in APPLIED_PARAMETERS)
        if ignored:
            notes.append(f"PARAMETER {', '.join(ignored)}: accepted for compatibility, not used by Outpost")
        return notes

    def stops(self) -> list[str]:
        """The ``PARAMETER stop`` sequences, in file order."""
        value = self.parameters.get("stop")
        return [str(s) for s in value] if isinstance(value, list) else []

    def n_ctx(self) -> int | None:
        """The context size the Modelfile asks for (``num_ctx``), or None for the runtime's default."""
        value = self.parameters.get("num_ctx")
        return None if value is None else _as_int(value)

    def messages_for(self, user_messages: list[Message]) -> list[Message]:
        """The conversation to send: system prompt, then MESSAGE history, then the user's messages.

        A system message the caller sends first replaces SYSTEM (as in Ollama) and stays first, ahead
        of the history, because chat templates expect the system message at the start.
        """
        incoming = [dict(m) for m in user_messages]
        head: list[Message] = []
        if incoming and incoming[0].get("role") == "system":
            head.append(incoming.pop(0))
        elif self.system:
            head.append({"role": "system", "content": self.system})
        return head + [dict(m) for m in self.messages] + incoming


def _as_int(value: object) -> int:
    """Values are typed when parsed; this narrows ``object`` and accepts a hand-built Modelfile's strings."""
    if isinstance(value, (int, float, str)):
        return int(value)
    raise ConfigError(f"Expected an integer parameter, got {value!r}")


def _as_float(value: object) -> float:
    if isinstance(value, (int, float, str)):
        return float(value)
    raise ConfigError(f"Expected a numeric parameter, got {value!r}")


# -- parsing ----------------------------------------------------------------------------------


class _Builder:
    """Collects instructions in file order; Ollama's rules for repeats live here."""

    def __init__(self) -> None:
        self.from_: str | None = None
        self.from_where = ""
        self.parameters: dict[str, object] = {}
        self.template: str | None = None
        self.system: str | None = None
        self.adapters: list[str] = []
        self.license: list[str] = []
        self.messages: list[dict[str, str]] = []

    def build(self, source: str) -> Modelfile:
        if self.from_ is None:
            raise ConfigError(f"{source} has no FROM line: add one naming the base model, e.g. `FROM smollm2`")
        return Modelfile(
            self.from_, self.parameters, self.template, self.system, self.adapters, self.license, self.messages
        )


def parse_modelfile(text: str, *, source: str = "Modelfile") -> Modelfile:
    """Parse Modelfile ``text``; ``source`` names it in errors, which always carry the line number."""
    lines = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    builder = _Builder()
    index = 0
    while index < len(lines):
        stripped = lines[index].strip(" \t")
        if stripped and not stripped.startswith("#"):
            index = _instruction(builder, stripped, lines, index, f"{source} line {index + 1}")
        index += 1
    return builder.build(source)


def _instruction(builder: _Builder, line: str, lines: list[str], index: int, where: str) -> int:
    """Apply the instruction starting on ``lines[index]``; returns the index of its last line."""
    head = _HEAD.fullmatch(line)
    assert head is not None  # a non-blank line always has a first word
    word, rest = head.group(1), head.group(2) or ""
    keyword = word.lower()
    if keyword in _OLLAMA_ONLY:
        raise ConfigError(f"{where}: {word.upper()} is an Ollama instruction Outpost does not support; remove it")
    if keyword not in _INSTRUCTIONS:
        names = ", ".join(i.upper() for i in _INSTRUCTIONS)
        raise ConfigError(f"{where}: unknown instruction {word!r}; use one of {names}")
    if keyword in ("parameter", "message"):
        pair = _WORD_THEN_VALUE.fullmatch(rest)
        if pair is None or not pair.group(2).strip():
            what = "a parameter name and a value" if keyword == "parameter" else "a role and a message"
            raise ConfigError(
                f"{where}: {keyword.upper()} needs {what}, e.g. "
                + ("`PARAMETER temperature 0.7`" if keyword == "parameter" else "`MESSAGE user Hi`")
            )
        value, last = _read_value(pair.group(2), lines, index, where)
        if keyword == "parameter":
            _set_parameter(builder, pair.group(1).lower(), value, where)
        else:
            builder.messages.append({"role": _role(pair.group(1), where), "content": value})
        return last
    if not rest.strip():
        raise ConfigError(f"{where}: {keyword.upper()} needs a value")
    value, last = _read_value(rest, lines, index, where)
    _set_text(builder, keyword, value, where)
    return last


def _read_value(first: str, lines: list[str], index: int, where: str) -> tuple[str, int]:
    """A value beginning with ``first`` on line ``index``; a quoted one runs until its closing quote.

    Like Ollama, the value is complete at the first line end where the text so far, trimmed, is a
    whole bare, ``"..."`` or ``\"\"\"...\"\"\"`` string.
    """
    text, last = first, index
    while (value := _unquote(text.strip())) is None:
        last += 1
        if last >= len(lines):
            quote = '"""' if text.strip().startswith('"""') else '"'
            raise ConfigError(f"{where}: the value opened with {quote} is never closed; end it with {quote}")
        text += "\n" + lines[last]
    return value, last


def _unquote(text: str) -> str | None:
    """The value ``text`` spells, or None while a quote is still open (Ollama's ``unquote``)."""
    if text.startswith('"""'):
        return text[3:-3] if len(text) >= 6 and text.endswith('"""') else None
    if text.startswith('"'):
        return text[1:-1] if len(text) >= 2 and text.endswith('"') else None
    return text


def _set_text(builder: _Builder, keyword: str, value: str, where: str) -> None:
    """FROM, TEMPLATE, SYSTEM, ADAPTER, LICENSE: one value each."""
    if keyword == "from":
        if not value.strip():
            raise ConfigError(f"{where}: FROM needs a model name or a path to a .gguf file")
        if builder.from_ is not None:
            raise ConfigError(
                f"{where}: a second FROM (the first is at {builder.from_where}); "
                "Outpost derives a model from exactly one base"
            )
        builder.from_, builder.from_where = value, where
    elif keyword == "template":
        builder.template = value
    elif keyword == "system":
        builder.system = value
    elif keyword == "adapter":
        builder.adapters.append(value)
    else:
        builder.license.append(value)


def _role(word: str, where: str) -> str:
    role = word.lower()
    if role not in ROLES:
        raise ConfigError(f"{where}: MESSAGE role {word!r} is not one of {', '.join(ROLES)}")
    return role


def _set_parameter(builder: _Builder, name: str, raw: str, where: str) -> None:
    """Type ``raw`` by the parameter's name; ``stop`` accumulates, any other repeat replaces."""
    kind = PARAMETER_TYPES.get(name)
    if kind is None:
        raise ConfigError(f"{where}: unknown parameter {name!r}; known ones: {', '.join(sorted(PARAMETER_TYPES))}")
    if kind is list:
        if not raw:
            raise ConfigError(f"{where}: PARAMETER stop needs a non-empty string")
        stops = builder.parameters.setdefault("stop", [])
        assert isinstance(stops, list)
        stops.append(raw)
        return
    try:
        builder.parameters[name] = _CONVERT[kind](raw)
    except ValueError:
        raise ConfigError(f"{where}: PARAMETER {name} needs {_EXPECTED[kind]}, not {raw!r}") from None


def _to_int(raw: str) -> int:
    if not _INT.fullmatch(raw):
        raise ValueError(raw)
    return int(raw)


def _to_float(raw: str) -> float:
    value = float(raw) if "_" not in raw else math.nan  # Python accepts 1_0, Go does not
    if not math.isfinite(value):
        raise ValueError(raw)
    return value


def _to_bool(raw: str) -> bool:
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(raw)


_CONVERT: dict[type, Callable[[str], object]] = {int: _to_int, float: _to_float, bool: _to_bool}
_EXPECTED = {int: "an integer", float: "a number", bool: "true or false"}


# -- writing ----------------------------------------------------------------------------------


def _format(value: object) -> str:
    """A parameter value as Ollama spells it (``true``, ``4096``, ``0.7``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _quote(value: str, what: str) -> str:
    """The shortest spelling of ``value`` that reads back as exactly ``value``.

    Ollama's syntax has no escapes, so each candidate is checked by reading it back; a value no
    spelling can carry (a line ending in ``\"\"\"`` and another ending in ``"``) is refused.
    """
    candidates = [value] if value else []
    quoted = [f'"{value}"', f'"""{value}"""']
    candidates += quoted[::-1] if "\n" in value else quoted
    for candidate in candidates:
        lines = candidate.split("\n")
        try:
            if _read_value(lines[0], lines, 0, what) == (value, len(lines) - 1):
                return candidate
        except ConfigError:
            continue
    raise ConfigError(
        f"{what} value {value!r} cannot be written as a Modelfile value: Modelfiles have no "
        'escapes, and it has one line ending in """ and another ending in "'
    )


# -- files ------------------------------------------------------------------------------------


def load_modelfile(path: str | os.PathLike[str]) -> Modelfile:
    """Read and parse a Modelfile; a relative FROM or ADAPTER path is taken from the Modelfile's folder.

    A FROM value that names no existing file or folder is kept as written: it is a model name.
    """
    file = Path(path).expanduser()
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"No Modelfile at {file}: pass its path with -f") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read the Modelfile {file}: {exc}") from exc
    modelfile = parse_modelfile(_decode(data, file), source=str(file))
    folder = file.parent
    return replace(
        modelfile, from_=_resolve(modelfile.from_, folder), adapters=[_resolve(a, folder) for a in modelfile.adapters]
    )


def _decode(data: bytes, file: Path) -> str:
    """UTF-8 (BOM or not), or UTF-16 with a BOM, which Windows editors and PowerShell write."""
    encoding = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file} is not UTF-8 text: {exc}") from None


def _resolve(value: str, folder: Path) -> str:
    """``value`` as an absolute path when it names something on disk, else unchanged (a model name)."""
    candidate = Path(value).expanduser()
    if not candidate.is_absolute():
        candidate = folder / candidate
    try:
        return str(candidate.resolve()) if candidate.exists() else value
    except (OSError, ValueError):  # names no path can hold, e.g. with a NUL
        return value
