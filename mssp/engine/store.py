"""The engine's database operations: create runs, mark hosts running under host locks, record
results, park and expire offline-queued hosts, update runs. Each write takes a Tx (see tx.py) so
the writer can put many of them in one transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mssp.engine.options import RunOptions
from mssp.engine.state import HostState, RunState
from mssp.engine.tx import Tx, placeholders, write_transaction
from mssp.inventory import HostRecord
from mssp.models.runs import HostRun

# SQL below is built only from constant fragments and generated "?" lists (S608 is a false alarm
# here); every value travels as a parameter.


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class HostRow:
    """The engine's view of one HostRun row."""

    id: int
    host_name: str
    client: str
    wave: int
    state: str
    queued_until: datetime | None


@dataclass(frozen=True)
class Final:
    """A host's final state and its results, to be recorded."""

    host_run_id: int
    run_id: int
    host_name: str
    state: str
    attempts: int
    exit_status: int | None
    stdout: str
    stderr: str
    truncated: bool
    error: str
    result: dict[str, Any]


async def create_run(
    *,
    task: str,
    target: str,
    params: dict[str, Any],
    options: RunOptions,
    waves: Sequence[Sequence[HostRecord]],
    owner: str,
    started_by: str,
    retry_of: int | None = None,
) -> int:
    """Insert the run (running, owned by us) and every host queued, in one transaction.

    Raw SQL rather than the ORM: building 500 model instances cost more than the inserts.
    """
    at = now()
    async with write_transaction() as tx:
        rows = await tx.fetch(
            "INSERT INTO run (task, target, params, options, state, check_mode, retry_of_id, "
            "started_by, owner, message, created_at, started_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?) RETURNING id",
            [
                task,
                target,
                json.dumps(params),
                json.dumps(options.to_json()),
                RunState.RUNNING.value,
                options.check,
                retry_of,
                started_by,
                owner,
                at,
                at,
            ],
        )
        run_id = int(rows[0]["id"])
        await tx.executemany(
            "INSERT INTO host_run (run_id, host_id, host_name, client_slug, wave, state, "
            "attempts, stdout, stderr, truncated, error, result, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, 0, '', '', ?, '', '{}', ?)",
            [
                (run_id, host.id, host.full_name, host.client, index, "queued", False, at)
                for index, wave in enumerate(waves)
                for host in wave
            ],
        )
    return run_id


async def load_rows(run_id: int) -> list[HostRow]:
    rows = (
        await HostRun.filter(run_id=run_id)
        .order_by("id")
        .values("id", "host_name", "client_slug", "wave", "state", "queued_until")
    )
    return [
        HostRow(r["id"], r["host_name"], r["client_slug"], r["wave"], r["state"], r["queued_until"])
        for r in rows
    ]


@dataclass(frozen=True)
class Marked:
    """Which rows mark_running set running, and which wait because another run holds the host."""

    running: frozenset[int]
    busy: frozenset[int]


async def mark_running(tx: Tx, run_id: int, owner: str, rows: Sequence[HostRow]) -> Marked:
    """Take the host lock of each row and mark the ones we got (still queued) running.

    A host locked by another run stays queued: "one run per host at a time" holds across
    processes because the lock is a row and its primary key decides. A row that is no longer
    queued (cancelled meanwhile) is left alone and its lock given back.
    """
    if not rows:
        return Marked(frozenset(), frozenset())
    at = now()
    await tx.executemany(
        "INSERT INTO host_lock (host_name, run_id, owner, acquired_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (host_name) DO NOTHING",
        [(r.host_name, run_id, owner, at) for r in rows],
    )
    names = [r.host_name for r in rows]
    held = await tx.fetch(
        "SELECT host_name FROM host_lock WHERE run_id = ? AND owner = ? "  # noqa: S608
        f"AND host_name IN ({placeholders(len(names))})",
        [run_id, owner, *names],
    )
    got = {h["host_name"] for h in held}
    busy = frozenset(r.id for r in rows if r.host_name not in got)
    ids = [r.id for r in rows if r.host_name in got]
    if not ids:
        return Marked(frozenset(), busy)
    marked = await tx.fetch(
        "UPDATE host_run SET state = ?, started_at = ?, finished_at = NULL, updated_at = ? "  # noqa: S608
        f"WHERE id IN ({placeholders(len(ids))}) AND state = ? RETURNING id",
        [HostState.RUNNING.value, at, at, *ids, HostState.QUEUED.value],
    )
    running = {r["id"] for r in marked}
    gone = [(run_id, r.host_name) for r in rows if r.id in ids and r.id not in running]
    await release_locks(tx, gone)
    return Marked(frozenset(running), busy)


async def finish(tx: Tx, finals: Sequence[Final]) -> None:
    """Record final states and results, and release the host locks, in the caller's transaction."""
    at = now()
    await tx.executemany(
        "UPDATE host_run SET state = ?, attempts = attempts + ?, exit_status = ?, stdout = ?, "
        "stderr = ?, truncated = ?, error = ?, result = ?, queued_until = NULL, finished_at = ?, "
        "updated_at = ? WHERE id = ?",
        [
            (
                f.state,
                f.attempts,
                f.exit_status,
                f.stdout,
                f.stderr,
                f.truncated,
                f.error,
                json.dumps(f.result, default=str),
                at,
                at,
                f.host_run_id,
            )
            for f in finals
        ],
    )
    await release_locks(tx, [(f.run_id, f.host_name) for f in finals])


async def release_locks(tx: Tx, pairs: Sequence[tuple[int, str]]) -> None:
    await tx.executemany(
        "DELETE FROM host_lock WHERE run_id = ? AND host_name = ?",
        [(run_id, name) for run_id, name in pairs],
    )


async def park(
    tx: Tx, run_id: int, row: HostRow, attempts: int, error: str, until: datetime
) -> None:
    """Put an unreachable host back in the queue until ``until`` (the offline queue)."""
    at = now()
    await tx.execute(
        "UPDATE host_run SET state = ?, attempts = attempts + ?, error = ?, queued_until = ?, "
        "updated_at = ? WHERE id = ?",
        [HostState.QUEUED.value, attempts, error, until, at, row.id],
    )
    await release_locks(tx, [(run_id, row.host_name)])


async def settle_queued(
    tx: Tx,
    run_id: int,
    state: HostState,
    message: str,
    *,
    ids: Sequence[int] | None = None,
    include_parked: bool = True,
) -> int:
    """Move queued hosts of a run (all, or ``ids``) to skipped, cancelled or expired."""
    at = now()
    sql = (
        "UPDATE host_run SET state = ?, error = ?, finished_at = ?, updated_at = ? "
        "WHERE run_id = ? AND state = ?"
    )
    params: list[Any] = [state.value, message, at, at, run_id, HostState.QUEUED.value]
    if not include_parked:
        sql += " AND queued_until IS NULL"
    if ids is not None:
        if not ids:
            return 0
        sql += f" AND id IN ({placeholders(len(ids))})"
        params.extend(ids)
    return await tx.execute(sql, params)


async def settle_running(tx: Tx, run_id: int, state: HostState, message: str) -> int:
    """Move hosts of a run still marked running to ``state`` and free their locks; how many.

    Only for a run whose host tasks have all ended (a host whose final write failed)."""
    at = now()
    count = await tx.execute(
        "UPDATE host_run SET state = ?, error = ?, finished_at = ?, updated_at = ? "
        "WHERE run_id = ? AND state = ?",
        [state.value, message, at, at, run_id, HostState.RUNNING.value],
    )
    if count:
        await tx.execute("DELETE FROM host_lock WHERE run_id = ?", [run_id])
    return count


async def set_run(
    tx: Tx,
    run_id: int,
    state: RunState,
    *,
    message: str | None = None,
    owner: str | None = None,
    finished: bool = False,
) -> None:
    sets, params = ["state = ?"], [state.value]
    if message is not None:
        sets.append("message = ?")
        params.append(message)
    if owner is not None:
        sets.append("owner = ?")
        params.append(owner)
    if finished:
        sets.append("finished_at = ?")
        params.append(now())
    await tx.execute(f"UPDATE run SET {', '.join(sets)} WHERE id = ?", [*params, run_id])  # noqa: S608


async def claim_run(
    tx: Tx, run_id: int, *, owner: str, expected_owner: str, states: Sequence[str], new: RunState
) -> bool:
    """Take over a run if it is still owned by ``expected_owner`` in one of ``states``."""
    count = await tx.execute(
        "UPDATE run SET owner = ?, state = ?, finished_at = NULL "  # noqa: S608
        f"WHERE id = ? AND owner = ? AND state IN ({placeholders(len(states))})",
        [owner, new.value, run_id, expected_owner, *states],
    )
    return count == 1
