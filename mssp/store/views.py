"""Read-only fleet views for dashboards: per-host summaries read in a few grouped queries.

Each function answers one question a fleet view asks for every host at once (the latest run state,
the pending-updates count, the latest backup verdict, the agent presence of each relayed site), or
for one host (its runs), without loading documents it does not show: outputs, evidence and facts
stay in the database unless asked for. Nothing here writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

CHUNK = 500
"""Names or ids per IN (...) list: well inside SQLite's and PostgreSQL's parameter limits."""
UPDATES_TASK = "updates.check"


def _json(value: Any) -> Any:
    """A JSON field as values() returns it: decoded already, or raw text on some backends."""
    if isinstance(value, str | bytes):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


@dataclass(frozen=True)
class HostRunView:
    """One host's part of one run."""

    run_id: int
    task: str
    state: str
    """The host's state in the run (ok, changed, failed, unreachable, running...)."""
    run_state: str
    check_mode: bool
    started_at: datetime | None
    finished_at: datetime | None
    exit_status: int | None = None
    error: str = ""
    stdout: str = ""
    stderr: str = ""


async def latest_host_runs(host_names: Iterable[str]) -> dict[str, HostRunView]:
    """Each host's newest host run (any task), without outputs; hosts never run are absent."""
    from tortoise.functions import Max

    from mssp.models.runs import HostRun

    names = sorted(set(host_names))
    newest: list[int] = []
    for chunk in _chunks(names):
        rows = (
            await HostRun.filter(host_name__in=list(chunk))
            .annotate(last=Max("id"))
            .group_by("host_name")
            .values("host_name", "last")
        )
        newest.extend(r["last"] for r in rows if r["last"] is not None)
    found: dict[str, HostRunView] = {}
    for chunk in _chunks(newest):
        for row in await HostRun.filter(id__in=list(chunk)).values(
            "host_name",
            "run_id",
            "run__task",
            "run__state",
            "run__check_mode",
            "state",
            "exit_status",
            "error",
            "started_at",
            "finished_at",
        ):
            found[row["host_name"]] = HostRunView(
                run_id=row["run_id"],
                task=row["run__task"],
                state=row["state"],
                run_state=row["run__state"],
                check_mode=bool(row["run__check_mode"]),
                started_at=row["started_at"],
                finished_at=row["finished_at"],
                exit_status=row["exit_status"],
                error=row["error"],
            )
    return found


async def host_runs(host_name: str, *, limit: int = 20) -> list[HostRunView]:
    """One host's runs, newest first, with their outputs."""
    from mssp.models.runs import HostRun

    rows = (
        await HostRun.filter(host_name=host_name)
        .order_by("-id")
        .limit(limit)
        .values(
            "run_id",
            "run__task",
            "run__state",
            "run__check_mode",
            "state",
            "exit_status",
            "error",
            "stdout",
            "stderr",
            "started_at",
            "finished_at",
        )
    )
    return [
        HostRunView(
            run_id=r["run_id"],
            task=r["run__task"],
            state=r["state"],
            run_state=r["run__state"],
            check_mode=bool(r["run__check_mode"]),
            started_at=r["started_at"],
            finished_at=r["finished_at"],
            exit_status=r["exit_status"],
            error=r["error"],
            stdout=r["stdout"],
            stderr=r["stderr"],
        )
        for r in rows
    ]


async def os_families(host_ids: Iterable[int]) -> dict[int, str]:
    """The OS family each host's latest facts recorded (hosts never gathered: "")."""
    from mssp.models.inventory import Host

    ids = sorted(set(host_ids))
    found: dict[int, str] = {}
    for chunk in _chunks(ids):
        for row in await Host.filter(id__in=list(chunk)).values("id", "os_family"):
            found[row["id"]] = row["os_family"] or ""
    return found


@dataclass(frozen=True)
class PendingUpdates:
    """A host's pending OS updates, as last seen by the facts task or an updates.check run."""

    pending: int
    security: int | None
    at: datetime | None
    source: str
    """"facts" or "updates.check run N"."""


def _check_counts(result: Any) -> tuple[int, int | None] | None:
    result = _json(result)
    if not isinstance(result, Mapping) or not isinstance(result.get("pending"), list):
        return None
    security = result.get("security")
    return len(result["pending"]), security if isinstance(security, int) else None


async def pending_updates(hosts: Mapping[int, str]) -> dict[str, PendingUpdates]:
    """Pending updates of these hosts (id -> full name), the newer of facts and updates.check.

    A check run with ``security_only`` or exclusions counts only part of the updates, so only an
    unfiltered check is taken; check runs made in check mode count too (they change nothing).
    """
    from tortoise.functions import Max

    from mssp.models.inventory import Fact
    from mssp.models.runs import HostRun

    found: dict[str, PendingUpdates] = {}
    ids = list(hosts)
    for chunk in _chunks(ids):
        for row in (
            await Fact.filter(host_id__in=list(chunk))
            .order_by("id")
            .values("host_id", "data", "collected_at")
        ):
            updates = (_json(row["data"]) or {}).get("updates")
            if isinstance(updates, Mapping) and isinstance(updates.get("pending"), int):
                security = updates.get("security")
                found[hosts[row["host_id"]]] = PendingUpdates(
                    updates["pending"],
                    security if isinstance(security, int) else None,
                    row["collected_at"],
                    "facts",
                )
    names = sorted(set(hosts.values()))
    newest: list[int] = []
    for chunk in _chunks(names):
        rows = (
            await HostRun.filter(
                host_name__in=list(chunk), run__task=UPDATES_TASK, state__in=("ok", "changed")
            )
            .annotate(last=Max("id"))
            .group_by("host_name")
            .values("host_name", "last")
        )
        newest.extend(r["last"] for r in rows if r["last"] is not None)
    for chunk in _chunks(newest):
        for row in await HostRun.filter(id__in=list(chunk)).values(
            "host_name", "run_id", "run__params", "result", "finished_at"
        ):
            params = _json(row["run__params"]) or {}
            if params.get("security_only") or params.get("exclude"):
                continue
            counts = _check_counts(row["result"])
            if counts is None:
                continue
            known = found.get(row["host_name"])
            at = row["finished_at"]
            if known is None or known.at is None or (at is not None and at > known.at):
                found[row["host_name"]] = PendingUpdates(
                    counts[0], counts[1], at, f"{UPDATES_TASK} run {row['run_id']}"
                )
    return found


@dataclass(frozen=True)
class BackupCheckView:
    """A backup verification as views show it; ``evidence`` is mssp.backups.evidence JSON."""

    host: str
    client: str
    state: str
    reason: str
    checked_at: datetime
    run_id: int | None
    evidence: Mapping[str, Any] = field(default_factory=dict)


def _check_view(row: Mapping[str, Any], with_evidence: bool) -> BackupCheckView:
    return BackupCheckView(
        host=row["host_name"],
        client=row["client_slug"],
        state=row["state"],
        reason=row["reason"],
        checked_at=row["checked_at"],
        run_id=row["run_id"],
        evidence=(_json(row["evidence"]) or {}) if with_evidence else {},
    )


async def latest_backup_checks(
    *, client: str | None = None, with_evidence: bool = True
) -> list[BackupCheckView]:
    """The newest recorded verification of every host (by host name), in one grouped query.

    "Newest" is the last recorded (highest id): checks are recorded in the order their runs
    finished, which is the order they were made.
    """
    from tortoise.functions import Max

    from mssp.models.backups import BackupCheck

    query = BackupCheck.all()
    if client is not None:
        query = query.filter(client_slug=client)
    rows = await query.annotate(last=Max("id")).group_by("host_name").values("host_name", "last")
    ids = [r["last"] for r in rows if r["last"] is not None]
    columns = ["host_name", "client_slug", "state", "reason", "checked_at", "run_id"]
    if with_evidence:
        columns.append("evidence")
    found = []
    for chunk in _chunks(ids):
        found.extend(
            _check_view(r, with_evidence)
            for r in await BackupCheck.filter(id__in=list(chunk)).values(*columns)
        )
    return sorted(found, key=lambda c: c.host)


async def backup_history(host_name: str, *, limit: int = 50) -> list[BackupCheckView]:
    """One host's verifications, newest first, with their evidence."""
    from mssp.models.backups import BackupCheck

    rows = (
        await BackupCheck.filter(host_name=host_name)
        .order_by("-id")
        .limit(limit)
        .values("host_name", "client_slug", "state", "reason", "checked_at", "run_id", "evidence")
    )
    return [_check_view(r, True) for r in rows]


@dataclass(frozen=True)
class AgentPresence:
    """A relayed site's agent as last recorded from the relay's presence stream."""

    client: str
    site: str
    status: str
    """online, offline, or pending (enrolled, the agent never joined)."""
    last_seen: datetime | None
    recorded_at: datetime | None
    """When presence was last written (stale if no presence watcher has run since)."""


async def agent_presence() -> list[AgentPresence]:
    """Every enrolled, unrevoked site agent's last recorded presence.

    Raises ImportError when this build has no relay models; a database without the relay table
    raises the driver's error (callers fall back to "unknown").
    """
    from mssp.models.relay import SiteAgent

    rows = await SiteAgent.filter(revoked_at__isnull=True).values(
        "site__slug",
        "site__client__slug",
        "online",
        "last_seen",
        "presence_at",
        "joined_at",
        "agent_key",
    )
    found = []
    for r in rows:
        if r["online"]:
            status = "online"
        elif not r["agent_key"] and r["joined_at"] is None and r["last_seen"] is None:
            status = "pending"
        else:
            status = "offline"
        found.append(
            AgentPresence(
                client=r["site__client__slug"],
                site=r["site__slug"],
                status=status,
                last_seen=r["last_seen"],
                recorded_at=r["presence_at"],
            )
        )
    return sorted(found, key=lambda a: (a.client, a.site))


async def audit_page(
    *, client: str | None = None, action: str | None = None, limit: int = 200
) -> list[Any]:
    """The newest ``limit`` audit entries (mssp.audit.Entry), oldest first, read with a LIMIT.

    ``action`` matches as a prefix (``run`` finds run.start and run.end), like `mssp audit list`.
    """
    from dataclasses import fields as dc_fields

    from mssp.audit import Entry
    from mssp.models.audit import AuditEntry

    query = AuditEntry.all()
    if client:
        query = query.filter(client=client)
    if action:
        query = query.filter(action__startswith=action)
    rows = await query.order_by("-seq").limit(limit)
    names = [f.name for f in dc_fields(Entry)]
    return [Entry(**{n: getattr(r, n) for n in names}) for r in reversed(rows)]


async def audit_facets() -> tuple[list[str], list[str]]:
    """The distinct clients and actions in the audit log (for filter choices)."""
    from mssp.models.audit import AuditEntry

    clients = await AuditEntry.all().distinct().order_by("client").values_list("client", flat=True)
    actions = await AuditEntry.all().distinct().order_by("action").values_list("action", flat=True)
    return [c for c in clients if c], list(actions)
