"""What the app is handed: settings, the event bus, the engine, and a source of fleet data.

The dashboard never queries the database itself: it asks a ``FleetSource`` for plain values. The
app uses ``StoreSource`` (mssp.store over the open database); tests of the view model and the
benchmark use ``MemorySource`` with a list of records. Both give the same typed values.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from mssp.config import Settings
from mssp.errors import NotFoundError
from mssp.events import EventBus
from mssp.inventory import HostRecord
from tui.model import DOWN, REACHED_STATES, UP, HostStatus, SiteRow

FACTS_CHUNK = 500


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


class MemorySource:
    """A fleet held in memory (tests of the view model, the benchmark)."""

    def __init__(
        self, snapshot: FleetSnapshot, details: Mapping[str, HostDetail] | None = None
    ) -> None:
        self._snapshot = snapshot
        self._details = dict(details or {})
        self.runs: list[RunInfo] = []

    async def snapshot(self) -> FleetSnapshot:
        return self._snapshot

    async def recent_runs(self, limit: int = 20) -> list[RunInfo]:
        return list(self.runs[-limit:])

    async def enrich(self, hosts: Sequence[HostRecord]) -> Enrichment:
        return Enrichment()  # the snapshot already carries every status

    async def host_detail(self, full_name: str) -> HostDetail:
        if full_name in self._details:
            return self._details[full_name]
        for record in self._snapshot.hosts:
            if record.full_name == full_name:
                return HostDetail(record)
        raise NotFoundError(f"no host {full_name!r}")


class StoreSource:
    """The fleet as mssp.store and mssp.engine record it (the database must be open)."""

    RECENT_RUNS = 20
    STATUS_RUNS = 10
    """Recent runs read to show each host's last state at start-up."""

    async def snapshot(self) -> FleetSnapshot:
        from mssp.store import inventory as store_inventory

        hosts = await store_inventory.load_hosts()
        sites = [
            SiteRow(s.client, s.slug, reach=s.reach) for s in await store_inventory.list_sites()
        ]
        runs = await self.recent_runs(self.RECENT_RUNS)
        failed = [r.run_id for r in runs if r.failed]
        # Statuses, updates and backups come after the first paint (enrich): the inventory
        # alone is what makes the dashboard usable in under 2 s with 10,000 hosts.
        return FleetSnapshot(hosts=hosts, sites=sites, failed_runs=failed)

    async def enrich(self, hosts: Sequence[HostRecord]) -> Enrichment:
        """Host states from recent runs, pending updates from facts, backup verdicts. Each part
        that fails is named in the warnings; the others still show."""
        parts: dict[str, dict[str, Any]] = {h.full_name: {} for h in hosts}
        warnings: list[str] = []
        try:
            for name, info in (await _run_states(hosts, self.STATUS_RUNS)).items():
                parts[name].update(info)
        except Exception as exc:  # a part of the view, never the whole dashboard
            warnings.append(f"recent runs: {type(exc).__name__}: {exc}")
        try:
            for name, count in (await _pending_updates(hosts)).items():
                parts[name]["pending_updates"] = count
        except Exception as exc:
            warnings.append(f"pending updates: {type(exc).__name__}: {exc}")
        try:
            for name, state in (await _backup_states()).items():
                if name in parts:
                    parts[name]["backup_state"] = state
        except ImportError:
            pass  # backups not part of this build
        except Exception as exc:
            warnings.append(f"backup verifications: {type(exc).__name__}: {exc}")
        status = {name: HostStatus(**info) for name, info in parts.items() if info}
        return Enrichment(status=status, warnings=warnings)

    async def recent_runs(self, limit: int = 20) -> list[RunInfo]:
        from mssp.engine import list_runs

        return [
            RunInfo(
                run_id=r.run_id,
                task=r.task,
                target=r.target,
                state=r.state,
                counts=dict(r.counts),
                failed=r.exit_code in (4, 5) or r.state == "halted",
            )
            for r in await list_runs(limit=limit)
        ]

    async def host_detail(self, full_name: str) -> HostDetail:
        from mssp.engine import list_runs, load_summary
        from mssp.store import inventory as store_inventory
        from mssp.store.hostkeys import DbHostKeyStore

        record = await store_inventory.get_host(full_name)
        keys = [
            f"{k.public_key}  ({k.fingerprint}{', CA' if k.is_ca else ''})"
            for k in await DbHostKeyStore().keys(record)
        ]
        from mssp.store.facts import load_facts

        found = await load_facts(record)
        facts: Mapping[str, Any] = found.data if found else {}
        facts_at = found.collected_at.timestamp() if found else None
        backups: list[BackupCheckInfo] = []
        with contextlib.suppress(ImportError):
            from mssp.backups.history import host_history

            backups = [
                BackupCheckInfo(c.state, c.reason, c.checked_at.timestamp(), c.run_id)
                for c in await host_history(full_name, limit=20)
            ]
        runs: list[HostRunInfo] = []
        # Until the store offers "runs of one host", look through the recent runs.
        for summary in await list_runs(limit=self.RECENT_RUNS):
            full = await load_summary(summary.run_id)
            for host in full.hosts:
                if host.host == full_name:
                    runs.append(
                        HostRunInfo(
                            run_id=full.run_id,
                            task=full.task,
                            state=host.state,
                            exit_status=host.exit_status,
                            stdout=host.stdout,
                            stderr=host.stderr,
                            error=host.error,
                        )
                    )
        return HostDetail(
            record, facts=facts, facts_at=facts_at, runs=runs, host_keys=keys, backups=backups
        )


def _iso_time(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


async def _run_states(hosts: Sequence[HostRecord], runs: int) -> dict[str, dict[str, Any]]:
    """Each host's state in the newest of the last ``runs`` runs that included it."""
    from mssp.engine import list_runs, load_summary

    wanted = {h.full_name for h in hosts}
    found: dict[str, dict[str, Any]] = {}
    for summary in await list_runs(limit=runs):  # newest first
        full = await load_summary(summary.run_id)
        at = _iso_time(full.finished_at or full.started_at)
        for host in full.hosts:
            if host.host in wanted and host.host not in found:
                info: dict[str, Any] = {"last_run": host.state, "last_run_id": full.run_id}
                if host.state in REACHED_STATES:
                    info.update(status=UP, last_seen=at)
                elif host.state == "unreachable":
                    info["status"] = DOWN
                found[host.host] = info
        if len(found) == len(wanted):
            break
    return found


async def _pending_updates(hosts: Sequence[HostRecord]) -> dict[str, int]:
    """The pending-updates count from each host's latest facts, read in chunks (documents can
    be large; only the count is kept)."""
    from mssp.store.facts import facts_for

    by_id = {h.id: h.full_name for h in hosts if h.id is not None}
    ids = list(by_id)
    counts: dict[str, int] = {}
    for start in range(0, len(ids), FACTS_CHUNK):
        for host_id, facts in (await facts_for(ids[start : start + FACTS_CHUNK])).items():
            updates = facts.data.get("updates")
            if isinstance(updates, Mapping) and isinstance(updates.get("pending"), int):
                counts[by_id[host_id]] = updates["pending"]
    return counts


async def _backup_states() -> dict[str, str]:
    from mssp.backups.history import latest_checks

    return {c.host: c.state for c in await latest_checks()}


@dataclass
class Services:
    """What MsspApp is given by its caller (the CLI, a test, the benchmark)."""

    source: FleetSource
    bus: EventBus = field(default_factory=EventBus)
    settings: Settings | None = None
    engine: Any | None = None
    """An mssp.engine.Engine; None when runs cannot be started (no engine wired)."""
