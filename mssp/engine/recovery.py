"""Who owns a run, whether that process still lives, and reconciling runs a dead process left.

A run is owned by one process, named ``machine:pid:start-time`` (the start time guards against a
recycled pid). On start-up an engine finds runs whose owner on this machine is dead: hosts that
were running become interrupted (never ok or failed by guess), the run becomes interrupted, and
its host locks are released; queued hosts stay queued for `mssp runs resume`. Owners on another
machine cannot be checked from here and are left alone.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from mssp.engine import store
from mssp.engine.state import HostState, RunState
from mssp.engine.tx import Tx
from mssp.models.runs import HostLock, Run

log = logging.getLogger(__name__)

INTERRUPTED_MESSAGE = "the core stopped while this host was running; its outcome is unknown"


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ")"
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19]


def process_identity(pid: int | None = None) -> str:
    """This process's owner name: machine:pid:start-time."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or '0'}"


@dataclass(frozen=True)
class Owner:
    machine: str
    pid: int
    start: str

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        parts = text.rsplit(":", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), parts[2])


def owner_alive(owner: str) -> bool:
    """False only when the owner is provably dead: on this machine, and no such process lives."""
    if not owner:
        return False
    parsed = Owner.parse(owner)
    if parsed is None:
        return False
    if parsed.machine != socket.gethostname():
        return True
    return _start_time(parsed.pid) == parsed.start


@dataclass(frozen=True)
class Reconciled:
    """What start-up reconciliation changed."""

    interrupted_runs: tuple[int, ...]
    """Runs a dead process left running: now interrupted."""
    released_runs: tuple[int, ...]
    """Waiting runs (offline queue) whose owner died: now adoptable."""
    stale_locks: int


async def reconcile_run(tx: Tx, run_id: int, state: str, message: str) -> None:
    """Make a dead owner's run true: running hosts interrupted, the run interrupted or cancelled."""
    at = store.now()
    await tx.execute(
        "UPDATE host_run SET state = ?, error = ?, finished_at = ?, updated_at = ? "
        "WHERE run_id = ? AND state = ?",
        [HostState.INTERRUPTED.value, INTERRUPTED_MESSAGE, at, at, run_id, "running"],
    )
    await tx.execute("DELETE FROM host_lock WHERE run_id = ?", [run_id])
    if state == RunState.CANCELLING:
        await store.settle_queued(tx, run_id, HostState.CANCELLED, "run cancelled")
        await store.set_run(tx, run_id, RunState.CANCELLED, owner="", finished=True)
    else:
        await store.set_run(tx, run_id, RunState.INTERRUPTED, message=message, owner="")


async def reconcile(writer_write, me: str) -> Reconciled:
    """Reconcile every run and lock left by dead processes (``writer_write``: StateWriter.write)."""
    active = (RunState.QUEUED, RunState.RUNNING, RunState.CANCELLING, RunState.WAITING)
    runs = await Run.filter(state__in=[s.value for s in active]).values("id", "state", "owner")
    interrupted: list[int] = []
    released: list[int] = []
    for run in runs:
        if run["owner"] == me or owner_alive(run["owner"]):
            continue
        if run["state"] == RunState.WAITING:
            if run["owner"]:
                released.append(run["id"])
                await writer_write(lambda tx, r=run: _release(tx, r["id"], r["owner"]))
            continue
        interrupted.append(run["id"])
        message = f"interrupted: the process that ran it ({run['owner'] or 'unknown'}) died"
        await writer_write(lambda tx, r=run, m=message: reconcile_run(tx, r["id"], r["state"], m))
        await _audit_interrupted(run["id"], run["state"], message)
    stale = [
        lock
        for lock in await HostLock.all().values("host_name", "owner", "run_id")
        if lock["owner"] != me and not owner_alive(lock["owner"])
    ]
    if stale:
        await writer_write(
            lambda tx: tx.executemany(
                "DELETE FROM host_lock WHERE host_name = ? AND owner = ?",
                [(lock["host_name"], lock["owner"]) for lock in stale],
            )
        )
    return Reconciled(tuple(interrupted), tuple(released), len(stale))


async def _release(tx: Tx, run_id: int, owner: str) -> None:
    """A waiting run whose owner died: probes it had in flight are interrupted; anyone may adopt."""
    at = store.now()
    await tx.execute(
        "UPDATE host_run SET state = ?, error = ?, finished_at = ?, updated_at = ? "
        "WHERE run_id = ? AND state = ?",
        [HostState.INTERRUPTED.value, INTERRUPTED_MESSAGE, at, at, run_id, "running"],
    )
    await tx.execute("DELETE FROM host_lock WHERE run_id = ?", [run_id])
    await tx.execute("UPDATE run SET owner = '' WHERE id = ? AND owner = ?", [run_id, owner])


async def _audit_interrupted(run_id: int, state: str, message: str) -> None:
    """The dead process's intent entries stay open; this says what became of its run. What was
    reconciled stays reconciled if the log cannot be written (logged, not raised)."""
    from mssp import audit
    from mssp.engine.auditing import run_clients
    from mssp.errors import AuditError

    result = "cancelled" if state == RunState.CANCELLING else "interrupted"
    try:
        for client in await run_clients(run_id) or [""]:
            await audit.record(
                "run.reconciled",
                actor=process_identity(),
                client=client,
                target=f"run {run_id}",
                detail={"run": run_id, "message": message},
                result=result,
            )
    except AuditError as exc:
        log.error("run %s: reconciliation not audited: %s", run_id, exc.message)
