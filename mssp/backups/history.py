"""Verification history: BackupCheck rows made from finished backup.verify host runs, and reads.

A verification runs as an ordinary engine run (the task never touches the database), so its
verdict lives first in HostRun.result. ``record_run`` / ``sync_checks`` copy each finished host
run into one BackupCheck, exactly once (host_run_id is unique), whoever started the run: the
daemon, `mssp run backup.verify`, or the dashboard. A host that could not be reached or whose
verification broke is recorded UNVERIFIABLE, never silently skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mssp.backups.verify import BackupState

VERIFY_TASK = "backup.verify"
#: host states that say something about the backup (cancelled/skipped/interrupted say nothing)
_RECORDED = ("ok", "failed", "unreachable", "timeout", "expired")


@dataclass(frozen=True)
class CheckRecord:
    """One verification as views show it."""

    host: str
    client: str
    state: str
    reason: str
    checked_at: datetime
    run_id: int | None
    evidence: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "client": self.client,
            "state": self.state,
            "reason": self.reason,
            "checked_at": self.checked_at.isoformat(),
            "run_id": self.run_id,
            "evidence": dict(self.evidence),
        }


def verdict_of(state: str, result: Mapping[str, Any], error: str) -> tuple[str, str, dict, str]:
    """(state, reason, evidence, checked_at iso or "") for one finished host run."""
    backup = result.get("backup") if isinstance(result, Mapping) else None
    if isinstance(backup, Mapping) and backup.get("state") in BackupState.__members__:
        return (
            str(backup["state"]),
            str(backup.get("reason", "")),
            dict(backup.get("evidence") or {}),
            str(backup.get("checked_at", "")),
        )
    reasons = {
        "unreachable": "the host could not be reached",
        "expired": "the host stayed unreachable until the run's queue time ran out",
        "timeout": "the verification did not finish within the host timeout",
        "failed": "the verification could not run",
        "ok": "the verification left no verdict",
    }
    reason = reasons.get(state, f"the verification ended {state}")
    if error:
        reason += f": {error}"
    return BackupState.UNVERIFIABLE.value, reason, {}, ""


async def record_run(run_id: int) -> list[CheckRecord]:
    """Record the finished host runs of one backup.verify run (idempotent); returns the new ones."""
    from mssp.models.runs import HostRun, Run

    run = await Run.get_or_none(id=run_id)
    if run is None or run.task != VERIFY_TASK:
        return []
    rows = await HostRun.filter(run_id=run_id, state__in=_RECORDED).order_by("id")
    return await _record(rows)


async def sync_checks() -> list[CheckRecord]:
    """Record every finished backup.verify host run not recorded yet."""
    from mssp.models.backups import BackupCheck
    from mssp.models.runs import HostRun

    done = set(
        await BackupCheck.filter(host_run_id__isnull=False).values_list("host_run_id", flat=True)
    )
    rows = await HostRun.filter(run__task=VERIFY_TASK, state__in=_RECORDED).order_by("id")
    return await _record([r for r in rows if r.id not in done])


async def _record(rows: list[Any]) -> list[CheckRecord]:
    from mssp.db import write_transaction
    from mssp.models.backups import BackupCheck

    made = []
    for row in rows:
        state, reason, evidence, checked = verdict_of(row.state, row.result or {}, row.error)
        when = (
            datetime.fromisoformat(checked)
            if checked
            else (row.finished_at or row.updated_at or datetime.now(UTC))
        )
        async with write_transaction():
            if await BackupCheck.filter(host_run_id=row.id).exists():
                continue
            check = await BackupCheck.create(
                host_name=row.host_name,
                client_slug=row.client_slug,
                state=state,
                reason=reason,
                evidence=evidence,
                checked_at=when,
                run_id=row.run_id,
                host_run_id=row.id,
            )
        made.append(_record_of(check))
    return made


def _record_of(row: Any) -> CheckRecord:
    return CheckRecord(
        host=row.host_name,
        client=row.client_slug,
        state=row.state,
        reason=row.reason,
        checked_at=row.checked_at,
        run_id=row.run_id,
        evidence=row.evidence or {},
    )


async def latest_checks(client: str | None = None) -> list[CheckRecord]:
    """The newest verification of every host (optionally one client's), by host name."""
    from mssp.models.backups import BackupCheck

    query = BackupCheck.all()
    if client is not None:
        query = query.filter(client_slug=client)
    latest: dict[str, Any] = {}
    for row in await query.order_by("checked_at", "id"):
        latest[row.host_name] = row
    return [_record_of(latest[name]) for name in sorted(latest)]


async def host_history(host: str, *, limit: int = 50) -> list[CheckRecord]:
    """A host's verifications, newest first."""
    from mssp.models.backups import BackupCheck

    rows = await BackupCheck.filter(host_name=host).order_by("-checked_at", "-id").limit(limit)
    return [_record_of(r) for r in rows]
