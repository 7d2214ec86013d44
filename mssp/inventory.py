"""Inventory value objects built from rows, and target selection over them (pure functions).

``HostRecord`` is what the engine, connection manager, tasks and views see of a host: a frozen
value with no database behind it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

TRANSPORTS = ("ssh", "winrm")
VIA = ("site", "direct", "relay")


@dataclass(frozen=True)
class HostRecord:
    """One managed host as the core sees it."""

    client: str
    """Client slug."""
    site: str
    """Site slug."""
    name: str
    """Host name, unique within its site."""
    address: str
    port: int = 22
    username: str = "root"
    transport: str = "ssh"
    """"ssh" or "winrm"."""
    via: str = "direct"
    """Resolved path: "direct" or "relay" (never "site": the site's reach is resolved in)."""
    tags: frozenset[str] = frozenset()
    credential_id: int | None = None
    become_credential_id: int | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    os_family: str = ""
    id: int | None = None
    """Database id, when the record came from the database."""

    @property
    def full_name(self) -> str:
        return f"{self.client}/{self.site}/{self.name}"


# The selection parser lives in its own module (one noun each); imported here so callers use
# ``from mssp.inventory import select`` as CONTRACTS.md promises. Placed last: selection.py
# refers to HostRecord only for typing.
from mssp.selection import matcher, parse, select  # noqa: E402

__all__ = ["TRANSPORTS", "VIA", "HostRecord", "matcher", "parse", "select"]
