"""Make remote output safe for every view: neutralise terminal escapes and cap it per host.

Output of a managed host is hostile input: an escape sequence could retitle the terminal, move
the cursor over earlier lines, or hide text. ``neutralise`` turns every control character
except newline and tab into a visible escape (``\\x1b``, ``\\x07``...), together with C1 controls
and Unicode bidirectional overrides, so what a view shows is what the host sent, never what the
host wanted the terminal to do. ``cap`` keeps the head and the tail of a long output with a
visible mark in between.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TRUNCATED_MARK = "[mssp: output truncated, {dropped} characters dropped]"

# C0 controls except \t and \n, DEL, C1 controls; bidi embeddings/overrides/isolates; and the
# line/paragraph separators some terminals honour.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def neutralise(text: str) -> str:
    """Return ``text`` with every terminal control made visible and inert.

    ``\\r\\n`` becomes ``\\n`` (a Windows line end is not an attack); a lone ``\\r`` (which
    would let a line overwrite itself) is shown as ``\\r``.
    """
    if not text:
        return ""
    text = text.replace("\r\n", "\n")
    if text.isprintable() or not _UNSAFE.search(text):
        return text
    return _UNSAFE.sub(lambda m: "\\r" if m.group() == "\r" else _escape(m), text)


MAX_DATA_DEPTH = 64
"""Structured results nested deeper than this are cut (a parser of host output could return
anything json.loads accepts)."""
TOO_DEEP = "[mssp: nested too deeply]"
_MAX_INT_BITS = 13_000


def neutralise_data(value: Any, *, _depth: int = 0) -> Any:
    """Neutralise every string of a structured result, keys and values, recursively.

    What a task parsed (os-release fields, package names, a Windows reply) came from the host as
    much as its raw output did. The result is plain JSON data: mappings become dicts with string
    keys, sequences become lists, and anything else (a float that JSON cannot carry, an object)
    becomes its neutralised text, so what is stored is exactly what any view may show.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        # beyond ~4,300 digits int -> text (hence json.dumps) raises ValueError
        return value if value.bit_length() <= _MAX_INT_BITS else "[mssp: integer too large]"
    if isinstance(value, str):
        return neutralise(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if _depth >= MAX_DATA_DEPTH:
        return TOO_DEEP
    if isinstance(value, Mapping):
        return {
            neutralise(k if isinstance(k, str) else str(k)): neutralise_data(v, _depth=_depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [neutralise_data(v, _depth=_depth + 1) for v in value]
    return neutralise(str(value))


@dataclass(frozen=True)
class CappedText:
    """Output kept within a cap."""

    text: str
    truncated: bool
    dropped: int
    """Characters dropped from the middle."""


def cap(text: str, limit: int) -> CappedText:
    """Keep at most ``limit`` characters: the head and the tail, with a mark where text was cut.

    The tail is kept because the end of an output (the error, the summary) is usually what a
    person needs; the head because it says what started.
    """
    if limit <= 0:
        raise ValueError("limit must be positive")
    if len(text) <= limit:
        return CappedText(text, False, 0)
    dropped = len(text) - limit
    head = limit // 2
    tail = limit - head
    mark = TRUNCATED_MARK.format(dropped=dropped)
    return CappedText(f"{text[:head]}\n{mark}\n{text[-tail:]}", True, dropped)


def safe_output(text: str, limit: int) -> CappedText:
    """Neutralise then cap: what the engine stores and what events carry."""
    return cap(neutralise(text), limit)
