"""Concurrency limits measured on the server side: forks, per-client limit, one run per host."""

from __future__ import annotations

import shlex
from pathlib import Path

from mssp.engine import RunOptions
from mssp.models.runs import HostRun
from mssp.tasks.base import Param, Plan, Task, TaskContext, TaskResult, register
from tests.engine.conftest import engine_for, make_hosts


@register
class RecordSpanTask(Task):
    """Test task: appends start and end times, tagged with the host's client, to a log."""

    name = "test.record_span"
    params = (Param("log", str), Param("seconds", float, default=0.3))

    async def check(self, ctx: TaskContext) -> Plan:
        return Plan(changes=("record",))

    async def apply(self, ctx: TaskContext, plan: Plan) -> TaskResult:
        log = shlex.quote(self.params["log"])
        tag = f"{shlex.quote(ctx.host.client)} {shlex.quote(ctx.host.full_name)}"
        cmd = (
            f"echo $(date +%s.%N) start {tag} >> {log}; sleep {self.params['seconds']}; "
            f"echo $(date +%s.%N) end {tag} >> {log}"
        )
        return TaskResult.changed(command=(await ctx.run(cmd, check=True)))


def max_overlap(log: Path, key: int) -> dict[str, int]:
    """Peak number of open spans per value of field ``key`` (1: client, 2: host)."""
    events = []
    for line in log.read_text().splitlines():
        parts = line.split()
        events.append((float(parts[0]), 0 if parts[1] == "end" else 1, parts[1 + key]))
    peak: dict[str, int] = {}
    now: dict[str, int] = {}
    for _, start, group in sorted(events):  # ends sort before starts at the same instant
        now[group] = now.get(group, 0) + (1 if start else -1)
        peak[group] = max(peak.get(group, 0), now[group])
    return peak


async def test_per_client_limit_holds(db, ssh_server, tmp_path) -> None:
    hosts = make_hosts(ssh_server, 18, clients=("acme", "bolt", "cafe"))
    log = tmp_path / "spans.log"
    async with engine_for(db, ssh_server, hosts) as (engine, _):
        run_id = await engine.start_run(
            "test.record_span",
            "all",
            params={"log": str(log)},
            options=RunOptions(forks=7, per_client=2),
        )
        summary = await engine.wait(run_id)
    assert summary.counts == {"changed": 18}
    per_client = max_overlap(log, 1)
    assert per_client == {"acme": 2, "bolt": 2, "cafe": 2}  # reached, never exceeded
    assert ssh_server.max_concurrent_commands <= 6


async def test_global_forks_hold(db, ssh_server, tmp_path) -> None:
    hosts = make_hosts(ssh_server, 12, clients=("a", "b", "c", "d"))
    async with engine_for(db, ssh_server, hosts) as (engine, _):
        run_id = await engine.start_run(
            "test.record_span",
            "all",
            params={"log": str(tmp_path / "l"), "seconds": 0.2},
            options=RunOptions(forks=4, per_client=10),
        )
        await engine.wait(run_id)
    assert ssh_server.max_concurrent_commands == 4


async def test_one_run_per_host_at_a_time(db, ssh_server, tmp_path) -> None:
    hosts = make_hosts(ssh_server, 4)
    log = tmp_path / "spans.log"
    async with engine_for(db, ssh_server, hosts) as (engine, _):
        first = await engine.start_run(
            "test.record_span", "all", params={"log": str(log), "seconds": 0.4}
        )
        second = await engine.start_run(
            "test.record_span", "all", params={"log": str(log), "seconds": 0.1}
        )
        one, two = await engine.wait(first), await engine.wait(second)
    assert one.counts == two.counts == {"changed": 4}
    assert set(max_overlap(log, 2).values()) == {1}  # no host ever ran two things at once
    rows = {(r.run_id, r.host_name): r for r in await HostRun.all()}
    for host in hosts:
        a, b = rows[(first, host.full_name)], rows[(second, host.full_name)]
        # either run may take a host first; the other waits for its lock
        assert b.started_at >= a.finished_at or a.started_at >= b.finished_at
