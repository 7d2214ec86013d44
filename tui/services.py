"""What the app is handed: settings, the event bus, the engine, and a source of fleet data.

The dashboard never queries the database itself: it asks a ``FleetSource`` for plain values. The
app uses ``StoreSource`` (tui/store_source.py: mssp.store over the open database); tests of the
view model and the benchmark use ``MemorySource`` with a list of records. Both give the same typed
values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from mssp.config import Settings
from mssp.errors import NotFoundError
from mssp.events import EventBus
from mssp.inventory import HostRecord
from tui.model import HostStatus, SiteRow

if TYPE_CHECKING:
    from mssp.audit import Entry, VerifyResult
    from mssp.scheduler import ScheduleInfo
    from mssp.store.views import BackupCheckView


@dataclass(frozen=True)
class FleetSnapshot:
    """Everything the dashboard shows, at one moment."""

    hosts: Sequence[HostRecord]
    status: Mapping[str, HostStatus] = field(default_factory=dict)
    sites: Sequence[SiteRow] = ()
    failed_runs: Sequence[int] = ()


@dataclass(frozen=True)
class HostRunInfo:
    """One host's part of a past run, for the host screen."""

    run_id: int
    task: str
    state: str
    started_at: float | None = None
    finished_at: float | None = None
    exit_status: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str = ""


@dataclass(frozen=True)
class BackupCheckInfo:
    """One backup verification of a host: VERIFIED, STALE, CORRUPT, UNVERIFIABLE or NOT_RUN."""

    state: str
    reason: str
    checked_at: float
    run_id: int | None = None


@dataclass(frozen=True)
class HostDetail:
    """The host screen's data: facts, recent runs, pinned keys."""

    record: HostRecord
    facts: Mapping[str, Any] = field(default_factory=dict)
    facts_at: float | None = None
    runs: Sequence[HostRunInfo] = ()
    host_keys: Sequence[str] = ()
    """Pinned host keys in OpenSSH form."""
    backups: Sequence[BackupCheckInfo] = ()
    """Backup verifications, newest first."""


@dataclass(frozen=True)
class RunInfo:
    """A recent run as the dashboard lists it (whoever started it)."""

    run_id: int
    task: str
    target: str
    state: str
    counts: Mapping[str, int] = field(default_factory=dict)
    failed: bool = False
    """Finished with failed, unreachable or timed-out hosts, or halted."""


@dataclass(frozen=True)
class Enrichment:
    """What the store knows of each host beyond the inventory, read after the first paint."""

    status: Mapping[str, HostStatus] = field(default_factory=dict)
    warnings: Sequence[str] = ()
    """Parts that could not be read (the dashboard logs them; the rest still shows)."""


class FleetSource(Protocol):
    async def snapshot(self) -> FleetSnapshot: ...

    async def enrich(self, hosts: Sequence[HostRecord]) -> Enrichment: ...

    async def host_detail(self, full_name: str) -> HostDetail: ...

    async def recent_runs(self, limit: int = 20) -> list[RunInfo]: ...

    async def record_runs(self, run_ids: Sequence[int]) -> None: ...

    async def latest_backups(self) -> list[BackupCheckView]: ...

    async def backup_history(self, host: str, limit: int = 50) -> list[BackupCheckView]: ...

    async def schedules(self) -> list[ScheduleInfo]: ...

    async def set_schedule_enabled(self, name: str, enabled: bool) -> ScheduleInfo: ...

    async def audit_entries(
        self, *, client: str | None = None, action: str | None = None, limit: int = 200
    ) -> list[Entry]: ...

    async def verify_audit(self) -> VerifyResult: ...


class MemorySource:
    """A fleet held in memory (tests of the view model, the benchmark)."""

    def __init__(
        self, snapshot: FleetSnapshot, details: Mapping[str, HostDetail] | None = None
    ) -> None:
        self._snapshot = snapshot
        self._details = dict(details or {})
        self.runs: list[RunInfo] = []
        self.backups: list[BackupCheckView] = []
        """Verifications, oldest first (latest_backups keeps each host's last)."""
        self.schedule_list: list[ScheduleInfo] = []
        self.audit: list[Entry] = []

    async def snapshot(self) -> FleetSnapshot:
        return self._snapshot

    async def recent_runs(self, limit: int = 20) -> list[RunInfo]:
        return list(self.runs[-limit:])

    async def enrich(self, hosts: Sequence[HostRecord]) -> Enrichment:
        return Enrichment()  # the snapshot already carries every status

    async def record_runs(self, run_ids: Sequence[int]) -> None:
        return None  # verdicts are given to a MemorySource as values

    async def latest_backups(self) -> list[BackupCheckView]:
        latest = {c.host: c for c in self.backups}
        return [latest[h] for h in sorted(latest)]

    async def backup_history(self, host: str, limit: int = 50) -> list[BackupCheckView]:
        return [c for c in reversed(self.backups) if c.host == host][:limit]

    async def schedules(self) -> list[ScheduleInfo]:
        return list(self.schedule_list)

    async def set_schedule_enabled(self, name: str, enabled: bool) -> ScheduleInfo:
        import dataclasses

        for i, info in enumerate(self.schedule_list):
            if info.name == name:
                self.schedule_list[i] = dataclasses.replace(info, enabled=enabled)
                return self.schedule_list[i]
        raise NotFoundError(f"no schedule {name!r}")

    async def audit_entries(
        self, *, client: str | None = None, action: str | None = None, limit: int = 200
    ) -> list[Entry]:
        found = [
            e
            for e in self.audit
            if (not client or e.client == client) and (not action or e.action.startswith(action))
        ]
        return found[-limit:]

    async def verify_audit(self) -> VerifyResult:
        from mssp.audit import verify_chain

        return verify_chain(self.audit)

    async def host_detail(self, full_name: str) -> HostDetail:
        if full_name in self._details:
            return self._details[full_name]
        for record in self._snapshot.hosts:
            if record.full_name == full_name:
                return HostDetail(record)
        raise NotFoundError(f"no host {full_name!r}")


@dataclass
class Services:
    """What MsspApp is given by its caller (the CLI, a test, the benchmark)."""

    source: FleetSource
    bus: EventBus = field(default_factory=EventBus)
    settings: Settings | None = None
    engine: Any | None = None
    """An mssp.engine.Engine; None when runs cannot be started (no engine wired)."""


def __getattr__(name: str) -> Any:
    # StoreSource lives in tui.store_source (it imports the values above); reached from here too.
    if name == "StoreSource":
        from tui.store_source import StoreSource

        return StoreSource
    raise AttributeError(name)
