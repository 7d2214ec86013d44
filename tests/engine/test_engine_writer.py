"""The state writer and the engine's statements, on both backends: consecutive host results are
one statement for all of them; marking hosts running takes their locks, skips busy hosts and gives
back the lock of a row no longer queued."""

from __future__ import annotations

import asyncio
from typing import Any

from mssp.engine import RunOptions, store
from mssp.engine.tx import Tx, write_transaction
from mssp.engine.writer import Merged, StateWriter
from mssp.inventory import HostRecord
from mssp.models.runs import HostLock, HostRun


async def test_consecutive_merged_writes_run_as_one_call_in_order(db) -> None:
    calls: list[list[Any]] = []

    async def many(tx: Tx, items: list[Any]) -> None:
        calls.append(list(items))
        await tx.fetch("SELECT 1 AS one")

    async def plain(tx: Tx) -> str:
        calls.append(["plain"])
        return "plain result"

    writer = StateWriter()
    try:
        results = await asyncio.gather(
            writer.write(Merged(many, 1)),
            writer.write(Merged(many, 2)),
            writer.write(plain),
            writer.write(Merged(many, 3)),
            writer.write(Merged(many, 4)),
        )
    finally:
        await writer.close()
    assert results == [None, None, "plain result", None, None]
    assert calls == [[1, 2], ["plain"], [3, 4]]  # submission order kept
    assert (writer.transactions, writer.ops) == (1, 5)


async def test_host_results_of_one_transaction_are_recorded_together(db) -> None:
    run_id = await _run(["a", "b", "c"])
    rows = await store.load_rows(run_id)
    writer = StateWriter()
    try:
        marked = await writer.write(lambda tx: store.mark_running(tx, run_id, "me", rows))
        assert marked.running == {r.id for r in rows}
        await asyncio.gather(
            *(writer.write(Merged(store.finish, _final(run_id, row))) for row in rows)
        )
    finally:
        await writer.close()
    done = {r.host_name: r for r in await HostRun.filter(run_id=run_id)}
    assert {name: (r.state, r.stdout) for name, r in done.items()} == {
        f"acme/hq/{h}": ("ok", f"out of acme/hq/{h}\n") for h in "abc"
    }
    assert await HostLock.filter(run_id=run_id).count() == 0


async def test_mark_running_skips_busy_hosts_and_rows_no_longer_queued(db) -> None:
    run_id = await _run(["free", "held", "gone"])
    other = await _run(["held"])
    rows = {r.host_name.rsplit("/", 1)[1]: r for r in await store.load_rows(run_id)}
    async with write_transaction() as tx:
        await tx.execute(
            "INSERT INTO host_lock (host_name, run_id, owner, acquired_at) VALUES (?, ?, ?, ?)",
            ["acme/hq/held", other, "someone", store.now()],
        )
        await tx.execute("UPDATE host_run SET state = 'cancelled' WHERE id = ?", [rows["gone"].id])
    async with write_transaction() as tx:
        marked = await store.mark_running(tx, run_id, "me", list(rows.values()))
    assert marked.running == {rows["free"].id}
    assert marked.busy == {rows["held"].id}
    states = {r.host_name: r.state for r in await HostRun.filter(run_id=run_id)}
    assert states == {
        "acme/hq/free": "running",
        "acme/hq/held": "queued",
        "acme/hq/gone": "cancelled",
    }
    locks = {(lock.host_name, lock.run_id) for lock in await HostLock.all()}  # type: ignore[attr-defined]
    assert locks == {("acme/hq/free", run_id), ("acme/hq/held", other)}


async def _run(names: list[str]) -> int:
    hosts = [HostRecord(client="acme", site="hq", name=n, address="192.0.2.1") for n in names]
    return await store.create_run(
        task="command",
        target="all",
        params={"cmd": "true"},
        options=RunOptions(),
        waves=[hosts],
        owner="me",
        started_by="test",
    )


def _final(run_id: int, row: store.HostRow) -> store.Final:
    return store.Final(
        host_run_id=row.id,
        run_id=run_id,
        host_name=row.host_name,
        state="ok",
        attempts=1,
        exit_status=0,
        stdout=f"out of {row.host_name}\n",
        stderr="",
        truncated=False,
        error="",
        result={"duration": 0.1},
    )
