"""Cancellation: graceful (running hosts finish within a grace period), immediate, and asked by
another process through the database. States stay true in every case."""

from __future__ import annotations

import asyncio
import time

from mssp.engine import RunOptions
from mssp.events import HostStateChanged, RunFinished
from tests.engine.conftest import engine_for, make_hosts


async def until_running(rec, count: int) -> None:
    for _ in range(500):
        if len([e for e in rec.of(HostStateChanged) if e.state == "running"]) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("hosts never started")


async def test_graceful_cancel_lets_running_hosts_finish(db, ssh_server) -> None:
    hosts = make_hosts(ssh_server, 6)
    async with engine_for(db, ssh_server, hosts, cancel_grace=10) as (engine, rec):
        run_id = await engine.start_run(
            "command", "all", params={"cmd": "sleep 0.5; echo done"}, options=RunOptions(forks=2)
        )
        await until_running(rec, 2)
        await engine.cancel(run_id)
        summary = await engine.wait(run_id)
    assert summary.state == "cancelled"
    assert summary.counts == {"ok": 2, "cancelled": 4}
    assert all(h.stdout == "done\n" for h in summary.hosts if h.state == "ok")
    assert rec.of(RunFinished)[-1].state == "cancelled"
    assert summary.exit_code == 6


async def test_graceful_cancel_stops_running_hosts_after_the_grace(db, ssh_server) -> None:
    hosts = make_hosts(ssh_server, 4)
    async with engine_for(db, ssh_server, hosts, cancel_grace=0.3) as (engine, rec):
        run_id = await engine.start_run(
            "command", "all", params={"cmd": "sleep 30"}, options=RunOptions(forks=2)
        )
        await until_running(rec, 2)
        started = time.monotonic()
        await engine.cancel(run_id)
        summary = await engine.wait(run_id)
        elapsed = time.monotonic() - started
    assert summary.counts == {"cancelled": 4}
    assert 0.3 <= elapsed < 3
    running_cancelled = [h for h in summary.hosts if h.error == "cancelled while running"]
    assert len(running_cancelled) == 2


async def test_second_cancel_stops_at_once(db, ssh_server) -> None:
    hosts = make_hosts(ssh_server, 3)
    async with engine_for(db, ssh_server, hosts, cancel_grace=60) as (engine, rec):
        run_id = await engine.start_run("command", "all", params={"cmd": "sleep 30"})
        await until_running(rec, 3)
        started = time.monotonic()
        await engine.cancel(run_id)  # first Ctrl-C: graceful, 60 s grace
        await asyncio.sleep(0.1)
        await engine.cancel(run_id, immediate=True)  # second Ctrl-C
        summary = await engine.wait(run_id)
    assert time.monotonic() - started < 3
    assert summary.state == "cancelled" and summary.counts == {"cancelled": 3}


async def test_cancel_asked_by_another_process_is_honoured(db, ssh_server) -> None:
    from mssp.engine import Engine
    from mssp.events import EventBus

    hosts = make_hosts(ssh_server, 4)
    async with engine_for(db, ssh_server, hosts, cancel_grace=0.2) as (engine, rec):
        run_id = await engine.start_run(
            "command", "all", params={"cmd": "sleep 30"}, options=RunOptions(forks=1)
        )
        await until_running(rec, 1)
        # another process's engine: it only writes the request; the owner winds the run down
        other = Engine(db, connections=None, bus=EventBus(), owner="elsewhere:1:1")  # type: ignore[arg-type]
        await other.cancel(run_id)
        await other.writer.close()
        summary = await engine.wait(run_id)
    assert summary.state == "cancelled" and summary.counts == {"cancelled": 4}
