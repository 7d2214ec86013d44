"""mssp.store.views (the dashboard's grouped reads) on SQLite and PostgreSQL, and the schedules
screen's timing as a pure function from a table of cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mssp.config import Settings
from mssp.models.runs import HostRun, Run
from mssp.scheduler import ScheduleInfo
from mssp.store import inventory as store
from mssp.store import views
from mssp.store.facts import save_facts
from tui.screens.backups import evidence_parts
from tui.screens.schedules import schedule_timing

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


async def run(task: str, states: dict[str, str], *, params=None, results=None, at=T0) -> int:
    row = await Run.create(task=task, target="x", params=params or {}, state="finished",
                           started_at=at, finished_at=at)  # fmt: skip
    for host, state in states.items():
        await HostRun.create(
            run=row,
            host_name=host,
            client_slug=host.split("/")[0],
            state=state,
            stdout=f"out of {host} in {row.id}",
            result=(results or {}).get(host, {}),
            started_at=at,
            finished_at=at,
        )
    return row.id


async def test_latest_run_of_each_host_and_runs_of_one_host(db: Settings) -> None:
    first = await run("command", {"a/s/h1": "ok", "a/s/h2": "ok"})
    second = await run("facts", {"a/s/h1": "unreachable"}, at=T0 + timedelta(hours=1))
    latest = await views.latest_host_runs(["a/s/h1", "a/s/h2", "a/s/never"])
    assert set(latest) == {"a/s/h1", "a/s/h2"}
    assert (latest["a/s/h1"].run_id, latest["a/s/h1"].state) == (second, "unreachable")
    assert (latest["a/s/h2"].run_id, latest["a/s/h2"].task) == (first, "command")
    assert latest["a/s/h1"].stdout == ""  # outputs are not read for the fleet view
    runs = await views.host_runs("a/s/h1")
    assert [(r.run_id, r.task, r.state) for r in runs] == [
        (second, "facts", "unreachable"),
        (first, "command", "ok"),
    ]
    assert runs[1].stdout == f"out of a/s/h1 in {first}"
    assert await views.host_runs("a/s/h1", limit=1) == runs[:1]


async def test_pending_updates_newer_of_facts_and_an_unfiltered_check(db: Settings) -> None:
    await store.create_client("a", "A")
    await store.create_site("a", "s", "S")
    hosts = {}
    for name in ("h1", "h2", "h3"):
        record = await store.create_host("a", "s", name, address="127.0.0.1")
        hosts[record.id] = record.full_name
    ids = {v: k for k, v in hosts.items()}
    await save_facts(ids["a/s/h1"], {"updates": {"pending": 7, "security": 2}})
    await save_facts(ids["a/s/h2"], {"updates": {"pending": 4, "security": 0}})
    pending = [{"name": "openssl", "security": True}, {"name": "vim", "security": False}]
    later = datetime.now(UTC) + timedelta(hours=1)  # newer than the facts just saved
    await run("updates.check", {"a/s/h1": "ok"},
              results={"a/s/h1": {"pending": pending, "security": 1}}, at=later)  # fmt: skip
    await run("updates.check", {"a/s/h2": "ok"}, params={"security_only": True},
              results={"a/s/h2": {"pending": pending[:1], "security": 1}}, at=later)  # fmt: skip
    found = await views.pending_updates(hosts)
    assert (found["a/s/h1"].pending, found["a/s/h1"].security) == (2, 1)
    assert found["a/s/h1"].source.startswith("updates.check run")
    assert (found["a/s/h2"].pending, found["a/s/h2"].source) == (4, "facts")  # filtered check
    assert "a/s/h3" not in found


async def test_audit_page_reads_the_newest_entries_with_filters(db: Settings) -> None:
    from mssp import audit

    for i in range(5):
        await audit.record("run.start" if i % 2 else "cred.add", client="acme", target=f"t{i}")
    await audit.record("run.end", client="globex", target="g")
    page = await views.audit_page(limit=3)
    assert [e.seq for e in page] == [4, 5, 6]
    assert [e.target for e in await views.audit_page(client="acme", action="run")] == ["t1", "t3"]
    assert audit.verify_chain(await views.audit_page(limit=100)).ok


def info(cron: str, tz: str, last: datetime, *, enabled: bool = True) -> ScheduleInfo:
    return ScheduleInfo(
        name="s", cron=cron, timezone=tz, task="command", target="x", params={},
        enabled=enabled, running=False, next_run=None, last_planned=last, last_run_id=None,
        last_late=False, last_missed=0, last_error="",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("cron", "tz", "last", "now", "local", "overdue", "missed"),
    [
        # next 02:30 Berlin (CET, UTC+1) after noon UTC on the 20th: 01:30 UTC on the 21st
        ("30 2 * * *", "Europe/Berlin", T0, T0 + timedelta(hours=1),
         "2026-11-21 02:30 CET", False, 0),
        # three nights slept through: overdue since the first, 3 planned times missed
        ("30 2 * * *", "Europe/Berlin", T0, T0 + timedelta(days=3),
         "2026-11-21 02:30 CET", True, 3),
        # a zone far west: Monday 06:00 New York is 11:00 UTC
        ("0 6 * * 1", "America/New_York", T0, T0, "2026-11-23 06:00 EST", False, 0),
        # summer time is the zone's own: 02:30 on 1 July in Berlin is CEST
        ("30 2 1 7 *", "Europe/Berlin", T0, T0, "2027-07-01 02:30 CEST", False, 0),
    ],
)  # fmt: skip
def test_next_run_is_read_in_the_schedules_zone(cron, tz, last, now, local, overdue, missed):
    timing = schedule_timing(info(cron, tz, last), now)
    assert f"{timing.next_run:%Y-%m-%d %H:%M %Z}" == local
    assert (timing.overdue, timing.missed) == (overdue, missed)


def test_disabled_or_broken_schedules_have_no_next_run() -> None:
    assert schedule_timing(info("30 2 * * *", "UTC", T0, enabled=False), T0).next_run is None
    broken = schedule_timing(info("30 2 * * *", "Mars/Olympus", T0), T0)
    assert broken.next_run is None and "Mars/Olympus" in broken.error


def test_evidence_summary_survives_partial_and_hostile_evidence() -> None:
    assert evidence_parts({}) == []
    parts = evidence_parts({"access": "wrong-password", "access_message": "bad\x1b[2Jpass"})
    assert parts == ["repository wrong-password (bad\\x1b[2Jpass)"]
    assert evidence_parts({"access": "ok", "check": {"structural_ok": False}}) == [
        "no snapshot",
        "check FAILED",
    ]
    restored = [{"sha256": "a", "expected_sha256": "b"}, {"sha256": "", "expected_sha256": ""}]
    assert evidence_parts({"restored": restored}, short=True) == ["no snapshot", "restore 0/2 ✗"]
