"""The one gate host-supplied text passes before any widget shows it: escape neutralisation.

Text from hosts (output, facts, names an inventory file supplied) may carry terminal escape
sequences or control characters; a view must never emit them. ``mssp.output.neutralise`` (the
engine's) makes every control visible and inert; this module adds the shapes widgets need.
"""

from __future__ import annotations

from rich.text import Text

from mssp.output import neutralise


def one_line(text: str) -> str:
    """Neutralised text folded to a single line (table cells, log lines)."""
    return neutralise(text).replace("\n", " ").replace("\t", " ")


def safe_text(text: str, style: str = "") -> Text:
    """A Rich Text of host-supplied text: never parsed as markup, never carrying escapes."""
    return Text(neutralise(text), style=style)


__all__ = ["neutralise", "one_line", "safe_text"]
