"""The hosts table's filter: words and field:value terms, all of which must match a row.

Free words match the host's full name, OS, address and tags (substring, case-insensitive);
``client:``, ``site:``, ``os:``, ``via:``, ``status:``, ``tag:``, ``run:`` and ``backup:`` match one
field; a leading ``!`` negates a term. ``client3 status:down !os:windows``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tui.rows import HostRow

FIELDS = ("client", "site", "os", "via", "status", "tag", "run", "backup")
LIVE_FIELDS = ("status", "run", "backup")
"""Fields that events change: a filter using them is re-applied when rows change."""


@dataclass
class HostFilter:
    """A parsed filter: every term must match (AND)."""

    terms: list[tuple[str | None, str, bool]] = field(default_factory=list)
    """(field or None for free text, value, negated)"""

    @classmethod
    def parse(cls, text: str) -> HostFilter:
        terms: list[tuple[str | None, str, bool]] = []
        for raw in text.lower().split():
            negated = raw.startswith("!")
            raw = raw.lstrip("!")
            name, sep, value = raw.partition(":")
            if sep and name in FIELDS:
                terms.append((name, value, negated))
            elif raw:
                terms.append((None, raw, negated))
        return cls(terms)

    @property
    def uses_live_fields(self) -> bool:
        return any(f in LIVE_FIELDS for f, _, _ in self.terms)

    def matches(self, row: HostRow) -> bool:
        for name, value, negated in self.terms:
            if name is None:
                hit = value in row.search
            elif name == "client":
                hit = row.client.lower() == value
            elif name == "site":
                hit = row.site.lower() == value or f"{row.client}/{row.site}".lower() == value
            elif name == "os":
                hit = row.os.lower().startswith(value)
            elif name == "via":
                hit = row.via == value
            elif name == "status":
                hit = row.status == value
            elif name == "tag":
                hit = value in row.tags
            elif name == "run":
                hit = row.last_run == value
            else:  # backup
                hit = row.backup_state.lower() == value
            if hit == negated:
                return False
        return True
