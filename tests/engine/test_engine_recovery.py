"""Start-up reconciliation of runs a dead process left, resume, the idle signal, and batched
writes (the engine's own overhead stays small)."""

from __future__ import annotations

import time

from mssp.engine import RunOptions
from mssp.engine.recovery import owner_alive, process_identity
from mssp.events import EngineIdle
from mssp.models.runs import HostLock, HostRun, Run
from mssp.tasks.base import Plan, Task, TaskContext, TaskResult, register
from tests.engine.conftest import engine_for, make_hosts

DEAD = "ghost-machine-is-not-this-one:1:1"


@register
class NothingToDoTask(Task):
    """Test task whose check finds nothing to change: measures the engine, not the hosts."""

    name = "test.nothing"

    async def check(self, ctx: TaskContext) -> Plan:
        return Plan()

    async def apply(self, ctx: TaskContext, plan: Plan) -> TaskResult:
        raise AssertionError("apply without a plan")


def test_owner_liveness() -> None:
    me = process_identity()
    assert owner_alive(me)
    machine, pid, start = me.rsplit(":", 2)
    assert not owner_alive(f"{machine}:{pid}:{int(start) + 1}")  # a recycled pid is not us
    assert not owner_alive(f"{machine}:999999999:1")
    assert owner_alive(DEAD)  # another machine: cannot tell, so never stolen
    assert not owner_alive("")


async def dead_run(hosts, *, owner: str) -> int:
    run = await Run.create(
        task="command",
        target="all",
        params={"cmd": "echo again"},
        options=RunOptions().to_json(),
        state="running",
        owner=owner,
    )
    for i, host in enumerate(hosts):
        state = ("ok", "running", "queued")[min(i, 2)]
        await HostRun.create(
            run=run,
            host_name=host.full_name,
            client_slug=host.client,
            state=state,
            stdout="first\n" if state == "ok" else "",
        )
        if state == "running":
            await HostLock.create(host_name=host.full_name, run=run, owner=owner)
    return run.id


async def test_dead_owner_run_reconciled_then_resumed(db, ssh_server) -> None:
    hosts = make_hosts(ssh_server, 4)
    machine = process_identity().rsplit(":", 2)[0]
    run_id = await dead_run(hosts, owner=f"{machine}:999999999:5")
    async with engine_for(db, ssh_server, hosts) as (engine, _):
        assert engine.reconciled.interrupted_runs == (run_id,)
        run = await Run.get(id=run_id)
        assert (run.state, run.owner) == ("interrupted", "")
        states = [r.state for r in await HostRun.filter(run_id=run_id).order_by("id")]
        assert states == ["ok", "interrupted", "queued", "queued"]
        assert await HostLock.all().count() == 0
        await engine.resume(run_id)
        summary = await engine.wait(run_id)
    assert summary.state == "finished"
    assert [h.state for h in summary.hosts] == ["ok", "interrupted", "ok", "ok"]
    assert summary.hosts[0].stdout == "first\n"  # the finished output is kept as it was
    assert summary.exit_code == 6  # an interrupted host is not a success


async def test_resume_rerun_interrupted_on_request(db, ssh_server) -> None:
    hosts = make_hosts(ssh_server, 3)
    machine = process_identity().rsplit(":", 2)[0]
    run_id = await dead_run(hosts, owner=f"{machine}:999999999:5")
    async with engine_for(db, ssh_server, hosts) as (engine, _):
        await engine.resume(run_id, rerun_interrupted=True)
        summary = await engine.wait(run_id)
    assert [h.state for h in summary.hosts] == ["ok", "ok", "ok"]


async def test_live_owner_elsewhere_is_never_stolen(db, ssh_server) -> None:
    from mssp.errors import RunError

    hosts = make_hosts(ssh_server, 3)
    run_id = await dead_run(hosts, owner=DEAD)
    async with engine_for(db, ssh_server, hosts) as (engine, _):
        assert engine.reconciled.interrupted_runs == ()
        try:
            await engine.resume(run_id)
        except RunError as exc:
            assert "live process" in str(exc)
        else:
            raise AssertionError("resumed a run another machine owns")
    assert (await Run.get(id=run_id)).state == "running"


async def test_idle_signal_after_runs(db, ssh_server) -> None:
    hosts = make_hosts(ssh_server, 3)
    async with engine_for(db, ssh_server, hosts) as (engine, rec):
        await engine.start_run("command", "all", params={"cmd": "sleep 0.2"})
        await engine.start_run("command", "h000", params={"cmd": "true"})
        await engine.wait_idle()
        runs = await Run.all()
        assert {r.state for r in runs} == {"finished"}
        assert await HostRun.filter(state__in=["queued", "running"]).count() == 0
        assert rec.of(EngineIdle)


async def test_writes_are_batched_and_overhead_small(db, ssh_server) -> None:
    hosts = make_hosts(ssh_server, 200, clients=[f"c{i}" for i in range(10)])
    async with engine_for(db, ssh_server, hosts) as (engine, _):
        warm = await engine.start_run(
            "command", "all", params={"cmd": "true"}, options=RunOptions(per_client=100)
        )
        assert (await engine.wait(warm)).counts == {"ok": 200}
        before = engine.writer.transactions
        started = time.perf_counter()
        run_id = await engine.start_run("test.nothing", "all", options=RunOptions(per_client=100))
        summary = await engine.wait(run_id)
        elapsed = time.perf_counter() - started
        transactions = engine.writer.transactions - before
    assert summary.counts == {"ok": 200}
    # 200 hosts x (running + result) in a handful of transactions, not 400
    assert transactions <= 40, transactions
    assert elapsed < 2.0, elapsed  # measured ~0.1 s; generous for a loaded machine


async def test_lock_left_by_a_process_that_died_meanwhile_is_freed(db, ssh_server) -> None:
    hosts = make_hosts(ssh_server, 2)
    machine = process_identity().rsplit(":", 2)[0]
    async with engine_for(db, ssh_server, hosts) as (engine, _):
        # after this engine started: a process on this machine took host h001 and died
        stale = await dead_run(hosts, owner=f"{machine}:999999999:7")
        run_id = await engine.start_run("command", "all", params={"cmd": "true"})
        summary = await engine.wait(run_id)
    assert summary.counts == {"ok": 2}
    assert (await Run.get(id=stale)).state == "interrupted"
