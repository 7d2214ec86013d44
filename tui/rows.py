"""The values the dashboard shows: a host row, a site row, attention counts, log lines.

Plain data, no Textual: built from ``HostRecord`` plus a ``HostStatus`` (what the store knows
beyond the inventory), updated in place by FleetModel, drawn by the widgets.
"""

from __future__ import annotations

from dataclasses import dataclass

from mssp.inventory import HostRecord
from tui.text import one_line

UP, DOWN, UNKNOWN = "up", "down", "unknown"
#: run states after which the host was reached (it answered, whatever the task thought of it)
REACHED_STATES = frozenset({"ok", "changed", "failed", "timeout", "skipped"})
PROBLEM_STATES = frozenset({"failed", "unreachable", "timeout", "interrupted"})
BACKUP_VERIFIED = "VERIFIED"
SORT_KEYS = ("name", "client", "os", "status", "last_seen", "updates", "backup", "last_run")


@dataclass(frozen=True)
class HostStatus:
    """What the store knows about a host beyond its inventory record."""

    status: str = UNKNOWN
    last_seen: float | None = None
    pending_updates: int | None = None
    backup_state: str = ""
    """"" when no backup policy covers the host; else VERIFIED, STALE, CORRUPT, ..."""
    last_run: str = ""
    """State of the host in its most recent run ("" when it never ran)."""
    last_run_id: int | None = None
    os: str = ""
    """The OS family the store knows now ("" keeps the inventory's): facts runs update it."""


@dataclass(slots=True)
class HostRow:
    """One host as the table shows it. Mutable: the model updates it in place and bumps version."""

    full_name: str
    client: str
    site: str
    name: str
    os: str
    via: str
    tags: frozenset[str]
    search: str
    status: str = UNKNOWN
    last_seen: float | None = None
    pending_updates: int | None = None
    backup_state: str = ""
    last_run: str = ""
    last_run_id: int | None = None
    note: str = ""
    """The last state message (why it failed), neutralised."""
    version: int = 0

    @property
    def display_name(self) -> str:
        """client/site/host, neutralised (full_name is the key and stays as the store has it)."""
        return f"{self.client}/{self.site}/{self.name}"

    @classmethod
    def build(cls, record: HostRecord, status: HostStatus | None = None) -> HostRow:
        status = status or HostStatus()
        name = one_line(record.name)
        client, site = one_line(record.client), one_line(record.site)
        os_family = one_line(record.os_family)
        tags = frozenset(one_line(t) for t in record.tags)
        search = " ".join((f"{client}/{site}/{name}", os_family, record.address, *tags)).lower()
        return cls(
            full_name=record.full_name,
            client=client,
            site=site,
            name=name,
            os=os_family,
            via=record.via,
            tags=tags,
            search=search,
            status=status.status,
            last_seen=status.last_seen,
            pending_updates=status.pending_updates,
            backup_state=status.backup_state,
            last_run=status.last_run,
            last_run_id=status.last_run_id,
        )


@dataclass(slots=True)
class SiteRow:
    """A site in the client tree, with its agent's presence (relayed sites only)."""

    client: str
    site: str
    reach: str = "direct"
    agent_online: bool | None = None
    """None for sites reached directly (no agent)."""
    agent_last_seen: float | None = None
    host_count: int = 0


@dataclass(frozen=True)
class Attention:
    """What needs the consultant's attention now."""

    hosts_down: int = 0
    backups_unverified: int = 0
    failed_runs: int = 0
    agents_offline: int = 0

    @property
    def total(self) -> int:
        return self.hosts_down + self.backups_unverified + self.failed_runs + self.agents_offline


@dataclass(frozen=True)
class LogLine:
    at: float
    level: str
    """"info", "warning" or "error"."""
    text: str


@dataclass(frozen=True)
class FlushResult:
    """What one flush changed, so the screen repaints only that."""

    changed_hosts: frozenset[str] = frozenset()
    reordered: bool = False
    sites_changed: bool = False
    log: tuple[LogLine, ...] = ()
    attention_changed: bool = False
    runs_finished: tuple[int, ...] = ()
    """Runs that ended in this flush: what the store knows of their hosts may have changed."""

    @property
    def empty(self) -> bool:
        return not (
            self.changed_hosts
            or self.reordered
            or self.sites_changed
            or self.log
            or self.attention_changed
        )
