"""StoreSource: the dashboard's values read from mssp.store, mssp.engine, backups, schedules, audit.

Fleet-wide reads go through mssp.store.views (a few grouped queries, no documents loaded that are
not shown), so enriching 10,000 hosts stays a handful of queries. Parts that belong to features a
build may lack (backups, relay) are optional: ImportError means "not in this build".
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mssp.inventory import HostRecord
from tui.model import DOWN, REACHED_STATES, UP, HostStatus, SiteRow
from tui.services import (
    BackupCheckInfo,
    Enrichment,
    FleetSnapshot,
    HostDetail,
    HostRunInfo,
    RunInfo,
)

if TYPE_CHECKING:
    from mssp.audit import Entry, VerifyResult
    from mssp.scheduler import ScheduleInfo
    from mssp.store.views import BackupCheckView

log = logging.getLogger(__name__)


def _stamp(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


class StoreSource:
    """The fleet as mssp.store and mssp.engine record it (the database must be open)."""

    RECENT_RUNS = 20
    HOST_RUNS = 20

    def __init__(self) -> None:
        self._synced = False
        self.warnings: list[str] = []
        """Optional parts of the snapshot that could not be read (shown in the activity log)."""

    async def snapshot(self) -> FleetSnapshot:
        from mssp.store import inventory as store_inventory

        hosts = await store_inventory.load_hosts()
        sites = {
            (s.client, s.slug): SiteRow(s.client, s.slug, reach=s.reach)
            for s in await store_inventory.list_sites()
        }
        await self._presence(sites)
        runs = await self.recent_runs(self.RECENT_RUNS)
        failed = [r.run_id for r in runs if r.failed]
        # Statuses, updates and backups come after the first paint (enrich): the inventory
        # alone is what makes the dashboard usable in under 2 s with 10,000 hosts.
        return FleetSnapshot(hosts=hosts, sites=list(sites.values()), failed_runs=failed)

    async def _presence(self, sites: dict[tuple[str, str], SiteRow]) -> None:
        """Agent presence as last recorded: the starting state until relay events arrive."""
        from mssp.store.views import agent_presence

        self.warnings.clear()
        try:
            found = await agent_presence()
        except ImportError:
            return  # no relay in this build
        except Exception as exc:  # an older database without the relay table, say
            self.warnings.append(f"agent presence: {type(exc).__name__}: {exc}")
            return
        for agent in found:
            site = sites.setdefault(
                (agent.client, agent.site), SiteRow(agent.client, agent.site, reach="relay")
            )
            if agent.status == "pending":
                continue  # enrolled, never joined: presence unknown ("agent ?")
            site.agent_online = agent.status == "online"
            site.agent_last_seen = _stamp(agent.last_seen or agent.recorded_at)

    async def enrich(self, hosts: Sequence[HostRecord]) -> Enrichment:
        """Host states from each host's newest run, pending updates, backup verdicts. Each part
        that fails is named in the warnings; the others still show."""
        from mssp.store import views

        parts: dict[str, dict[str, Any]] = {h.full_name: {} for h in hosts}
        warnings = list(self.warnings)
        try:
            for name, run in (await views.latest_host_runs(parts)).items():
                info: dict[str, Any] = {"last_run": run.state, "last_run_id": run.run_id}
                at = _stamp(run.finished_at or run.started_at)
                if run.state in REACHED_STATES:
                    info.update(status=UP, last_seen=at)
                elif run.state == "unreachable":
                    info["status"] = DOWN
                parts[name].update(info)
        except Exception as exc:  # a part of the view, never the whole dashboard
            warnings.append(f"recent runs: {type(exc).__name__}: {exc}")
        ids = {h.id: h.full_name for h in hosts if h.id is not None}
        try:
            for name, updates in (await views.pending_updates(ids)).items():
                parts[name]["pending_updates"] = updates.pending
            for host_id, family in (await views.os_families(ids)).items():
                if family:
                    parts[ids[host_id]]["os"] = family
        except Exception as exc:
            warnings.append(f"pending updates: {type(exc).__name__}: {exc}")
        try:
            if not self._synced:  # verify runs that ended while no one recorded them
                from mssp.backups.history import sync_checks

                await sync_checks()
                self._synced = True
            for check in await views.latest_backup_checks(with_evidence=False):
                if check.host in parts:
                    parts[check.host]["backup_state"] = check.state
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
        from mssp.store import inventory as store_inventory
        from mssp.store import views
        from mssp.store.facts import load_facts
        from mssp.store.hostkeys import DbHostKeyStore

        record = await store_inventory.get_host(full_name)
        keys = [
            f"{k.public_key}  ({k.fingerprint}{', CA' if k.is_ca else ''})"
            for k in await DbHostKeyStore().keys(record)
        ]
        found = await load_facts(record)
        facts: Mapping[str, Any] = found.data if found else {}
        backups: list[BackupCheckInfo] = []
        with contextlib.suppress(ImportError):
            backups = [
                BackupCheckInfo(c.state, c.reason, c.checked_at.timestamp(), c.run_id)
                for c in await views.backup_history(full_name, limit=20)
            ]
        runs = [
            HostRunInfo(
                run_id=r.run_id,
                task=r.task + (" (check)" if r.check_mode else ""),
                state=r.state,
                started_at=_stamp(r.started_at),
                finished_at=_stamp(r.finished_at),
                exit_status=r.exit_status,
                stdout=r.stdout,
                stderr=r.stderr,
                error=r.error,
            )
            for r in await views.host_runs(full_name, limit=self.HOST_RUNS)
        ]
        return HostDetail(
            record,
            facts=facts,
            facts_at=_stamp(found.collected_at) if found else None,
            runs=runs,
            host_keys=keys,
            backups=backups,
        )

    # -- backups, schedules, audit -----------------------------------------------------------------

    async def record_runs(self, run_ids: Sequence[int]) -> None:
        """Record the verdicts of backup.verify runs that just ended (the others are ignored)."""
        try:
            from mssp.backups.history import record_run
        except ImportError:
            return
        for run_id in run_ids:
            await record_run(run_id)

    async def latest_backups(self) -> list[BackupCheckView]:
        """The newest verification per host, after recording finished verify runs not yet
        recorded (what `mssp backups status` does: runs launched from here count at once)."""
        from mssp.backups.history import sync_checks
        from mssp.store.views import latest_backup_checks

        await sync_checks()
        return await latest_backup_checks()

    async def backup_history(self, host: str, limit: int = 50) -> list[BackupCheckView]:
        from mssp.store.views import backup_history

        return await backup_history(host, limit=limit)

    async def schedules(self) -> list[ScheduleInfo]:
        from mssp.scheduler import list_schedules

        return await list_schedules()

    async def set_schedule_enabled(self, name: str, enabled: bool) -> ScheduleInfo:
        """Enable or disable, audited: the intent is written first, so no audit, no change."""
        from mssp import audit
        from mssp.scheduler import set_enabled

        action = "schedule.enable" if enabled else "schedule.disable"
        seq = await audit.intent(action, target=name, detail={"via": "dashboard"})
        try:
            info = await set_enabled(name, enabled)
        except Exception as exc:
            await audit.outcome(seq, action, result="failed", target=name,
                                detail={"error": type(exc).__name__})  # fmt: skip
            raise
        await audit.outcome(seq, action, result="ok", target=name)
        return info

    async def audit_entries(
        self, *, client: str | None = None, action: str | None = None, limit: int = 200
    ) -> list[Entry]:
        from mssp.store.views import audit_page

        return await audit_page(client=client, action=action, limit=limit)

    async def verify_audit(self) -> VerifyResult:
        from mssp import audit

        return await audit.verify()
