"""Make remote output safe for every view: neutralise terminal escapes and cap it per host.

Output of a managed host is hostile input: an escape sequence could retitle the terminal, move
the cursor over earlier lines, or hide text. ``neutralise`` turns every control character
except newline and tab into a visible escape (``\\x1b``, ``\\x07``...), together with C1 controls
and Unicode bidirectional overrides, so what a view shows is what the host sent, never what the
host wanted the terminal to do. ``cap`` keeps the head and the tail of a long output with a
visible mark in between.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
