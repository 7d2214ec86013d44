"""The scheduler with an injected clock and a real engine (commands on an in-process SSH server):
due times in the schedule's zone, DST, a missed night run once and marked late, no overlap."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mssp.config import Settings
from mssp.errors import AlreadyExistsError, InventoryError, ParameterError, UsageError
from mssp.inventory import HostRecord
from mssp.models.backups import Schedule
from mssp.models.runs import Run
from mssp.scheduler import Finished, Scheduler, add_schedule, list_schedules, set_enabled
from tests.backups.conftest import FakeClock, real_engine
from tests.sshserver import SSHTestServer, ssh_test_server


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
async def srv():
    async with ssh_test_server() as server:
        yield server


def hosts_of(srv: SSHTestServer) -> list[HostRecord]:
    return [
        HostRecord(
            client="acme",
            site="hq",
            name=f"h{i}",
            address=srv.address,
            port=srv.port,
            username=srv.username,
            tags=frozenset({"nightly"}),
        )
        for i in range(2)
    ]


async def nightly(clock: FakeClock, name: str = "nightly", cmd: str = "true", **kw) -> None:
    await add_schedule(
        name,
        cron_text=kw.pop("cron", "30 2 * * *"),
        task="command",
        target="tag:nightly",
        params={"cmd": cmd},
        timezone=kw.pop("timezone", "Europe/Berlin"),
        now=clock(),
    )


async def test_fires_at_the_planned_local_time_and_not_before(db: Settings, srv) -> None:
    clock = FakeClock(utc(2026, 11, 25, 12, 0))
    await nightly(clock)
    finished: list[Finished] = []

    async def on_finished(done: Finished) -> None:
        finished.append(done)

    async with real_engine(db, srv, hosts_of(srv)) as engine:
        scheduler = Scheduler(engine, clock=clock, on_finished=on_finished)
        clock.set(utc(2026, 11, 26, 1, 29))  # 02:29 in Berlin (UTC+1)
        assert await scheduler.tick() == []
        clock.set(utc(2026, 11, 26, 1, 31))
        fired = await scheduler.tick()
        assert len(fired) == 1 and fired[0].run_id is not None
        assert fired[0].planned == utc(2026, 11, 26, 1, 30) and not fired[0].late
        await scheduler.wait_runs()
        assert [f.run_id for f in finished] == [fired[0].run_id]
        assert finished[0].summary.counts.get("ok") == 2
        row = await Schedule.get(name="nightly")
        assert not row.running and row.last_run_id == fired[0].run_id
        assert await scheduler.tick() == []  # the same night never twice


async def test_missed_nights_run_once_marked_late(db: Settings, srv) -> None:
    clock = FakeClock(utc(2026, 11, 20, 12, 0))
    await nightly(clock)
    async with real_engine(db, srv, hosts_of(srv)) as engine:
        scheduler = Scheduler(engine, clock=clock)
        clock.set(utc(2026, 11, 23, 6, 10))  # the laptop slept through three nights
        fired = await scheduler.tick()
        assert len(fired) == 1
        assert fired[0].late and fired[0].missed == 2
        assert fired[0].planned == utc(2026, 11, 23, 1, 30)
        await scheduler.wait_runs()
        assert await scheduler.tick() == []
        assert await Run.filter(task="command").count() == 1
        info = (await list_schedules())[0]
        assert info.last_late and info.last_missed == 2
        assert info.next_run == utc(2026, 11, 24, 1, 30)


async def test_spring_forward_gap_runs_once_after_the_gap(db: Settings, srv) -> None:
    # 2026-03-29 02:30 does not exist in Berlin: clocks jump from 02:00 to 03:00 (01:00 UTC)
    clock = FakeClock(utc(2026, 3, 28, 12, 0))
    await nightly(clock)
    async with real_engine(db, srv, hosts_of(srv)) as engine:
        scheduler = Scheduler(engine, clock=clock)
        clock.set(utc(2026, 3, 29, 0, 59))
        assert await scheduler.tick() == []
        clock.set(utc(2026, 3, 29, 1, 0))
        fired = await scheduler.tick()
        assert len(fired) == 1 and fired[0].planned == utc(2026, 3, 29, 1, 0)
        await scheduler.wait_runs()


async def test_a_running_schedule_is_never_started_again(db: Settings, srv) -> None:
    clock = FakeClock(utc(2026, 11, 25, 12, 0, 0))
    marker = f"/tmp/mssp-sched-{id(clock)}"
    await nightly(clock, "busy", cmd=f"sleep 1.5; echo x >> {marker}", cron="* * * * *")
    async with real_engine(db, srv, hosts_of(srv)[:1]) as engine:
        first = Scheduler(engine, clock=clock)
        second = Scheduler(engine, clock=clock)  # e.g. a second daemon on the same database
        clock.set(utc(2026, 11, 25, 12, 1, 5))
        fired = await first.tick()
        assert len(fired) == 1
        for minute in (2, 3):  # minutes pass while the run is still going
            clock.set(utc(2026, 11, 25, 12, minute, 5))
            assert await first.tick() == []
            assert await second.tick() == []
        assert (await Schedule.get(name="busy")).running
        await first.wait_runs()
        assert await Run.filter(task="command").count() == 1
        fired = await second.tick()  # free again: the passed minutes fold into one late run
        assert len(fired) == 1 and fired[0].missed == 1
        await second.wait_runs()
    import os

    with open(marker) as f:
        assert f.read().count("x") == 2
    os.unlink(marker)


async def test_claim_of_a_dead_process_is_released(db: Settings, srv) -> None:
    import socket

    clock = FakeClock(utc(2026, 11, 25, 12, 0))
    await nightly(clock)
    await Schedule.filter(name="nightly").update(
        running=True, running_owner=f"{socket.gethostname()}:999999:1"
    )
    async with real_engine(db, srv, hosts_of(srv)) as engine:
        scheduler = Scheduler(engine, clock=clock)
        assert await scheduler.tick() == []
        assert not (await Schedule.get(name="nightly")).running
        clock.set(utc(2026, 11, 26, 1, 31))
        assert len(await scheduler.tick()) == 1
        await scheduler.wait_runs()


async def test_a_run_that_cannot_start_releases_the_schedule(db: Settings, srv) -> None:
    clock = FakeClock(utc(2026, 11, 25, 12, 0))
    await add_schedule(
        "nobody",
        cron_text="@hourly",
        task="command",
        target="tag:none",
        params={"cmd": "true"},
        timezone="UTC",
        now=clock(),
    )
    async with real_engine(db, srv, hosts_of(srv)) as engine:
        scheduler = Scheduler(engine, clock=clock)
        clock.set(utc(2026, 11, 25, 13, 0, 30))
        fired = await scheduler.tick()
        assert len(fired) == 1 and fired[0].run_id is None and "no host matches" in fired[0].error
        row = await Schedule.get(name="nobody")
        assert not row.running and "no host matches" in row.last_error


async def test_disabled_time_is_not_missed(db: Settings, srv) -> None:
    clock = FakeClock(utc(2026, 11, 20, 12, 0))
    await nightly(clock)
    await set_enabled("nightly", False)
    async with real_engine(db, srv, hosts_of(srv)) as engine:
        scheduler = Scheduler(engine, clock=clock)
        clock.set(utc(2026, 11, 24, 12, 0))
        assert await scheduler.tick() == []
        await set_enabled("nightly", True, now=clock())
        assert await scheduler.tick() == []  # the four disabled nights are not "missed"
        clock.set(utc(2026, 11, 25, 1, 31))
        assert len(await scheduler.tick()) == 1
        await scheduler.wait_runs()


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"cron_text": "61 * * * *"}, UsageError),
        ({"timezone": "Mars/Olympus"}, UsageError),
        ({"task": "no.such.task"}, ParameterError),
        ({"params": {"cmd": ""}}, ParameterError),
        ({"target": "tag:"}, InventoryError),
    ],
)
async def test_bad_schedules_are_refused_and_nothing_stored(db: Settings, changes, error) -> None:
    values = {
        "cron_text": "30 2 * * *",
        "task": "command",
        "target": "tag:x",
        "params": {"cmd": "true"},
        "timezone": "UTC",
    }
    values.update(changes)
    with pytest.raises(error):
        await add_schedule("bad", **values)
    assert await Schedule.all().count() == 0


async def test_names_are_unique(db: Settings) -> None:
    now = utc(2026, 11, 25)
    await add_schedule(
        "n1",
        cron_text="@daily",
        task="command",
        target="all",
        params={"cmd": "true"},
        timezone="UTC",
        now=now,
    )
    with pytest.raises(AlreadyExistsError):
        await add_schedule(
            "n1",
            cron_text="@daily",
            task="command",
            target="all",
            params={"cmd": "true"},
            timezone="UTC",
            now=now,
        )


async def test_default_zone_is_the_single_clients(db: Settings) -> None:
    from mssp.store.inventory import create_client, create_host, create_site

    await create_client("acme", "Acme", timezone="America/New_York")
    await create_site("acme", "hq", "HQ")
    await create_host("acme", "hq", "fs01", address="127.0.0.1", tags=("backed-up",))
    await create_client("globex", "Globex", timezone="Asia/Tokyo")
    now = utc(2026, 11, 25)
    one = await add_schedule(
        "one",
        cron_text="@daily",
        task="command",
        target="tag:backed-up",
        params={"cmd": "true"},
        now=now,
    )
    assert one.timezone == "America/New_York"
    named = await add_schedule(
        "named",
        cron_text="@daily",
        task="command",
        target="client:globex",
        params={"cmd": "true"},
        now=now,
    )
    assert named.timezone == "Asia/Tokyo"
    many = await add_schedule(
        "many", cron_text="@daily", task="command", target="all", params={"cmd": "true"}, now=now
    )
    assert many.timezone == "America/New_York"  # "all" is acme's one host here


async def test_fall_back_runs_once_at_the_first_occurrence(db: Settings, srv) -> None:
    # 2026-10-25 02:30 happens twice in Berlin: 00:30 UTC (CEST) and 01:30 UTC (CET)
    clock = FakeClock(utc(2026, 10, 24, 12, 0))
    await nightly(clock)
    async with real_engine(db, srv, hosts_of(srv)) as engine:
        scheduler = Scheduler(engine, clock=clock)
        clock.set(utc(2026, 10, 25, 0, 31))
        fired = await scheduler.tick()
        assert len(fired) == 1 and fired[0].planned == utc(2026, 10, 25, 0, 30)
        await scheduler.wait_runs()
        clock.set(utc(2026, 10, 25, 1, 31))
        assert await scheduler.tick() == []
        info = (await list_schedules())[0]
        assert info.next_run == utc(2026, 10, 26, 1, 30)
