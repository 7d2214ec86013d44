"""The offline queue: hosts behind an offline agent wait durably, run when the agent returns,
expire after the TTL with an event, and survive an engine restart."""

from __future__ import annotations

import asyncio
import dataclasses

from mssp.engine import RunOptions
from mssp.events import AgentPresenceChanged, HostExpired, HostQueuedOffline
from mssp.models.runs import HostRun, Run
from tests.engine.conftest import SwitchableRelay, engine_for, make_hosts


def relayed(srv, site: str, count: int, client: str = "acme"):
    return [
        dataclasses.replace(h, site=site, name=f"{site}-{h.name}", via="relay", client=client)
        for h in make_hosts(srv, count)
    ]


async def until(predicate, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition never held")


async def test_offline_host_runs_when_agent_returns_other_expires(db, ssh_server) -> None:
    relay = SwitchableRelay()
    back = relayed(ssh_server, "branch", 2)
    never = relayed(ssh_server, "far", 1)
    direct = make_hosts(ssh_server, 1)
    async with engine_for(db, ssh_server, back + never + direct, relay=relay) as (engine, rec):
        run_id = await engine.start_run(
            "command",
            "all",
            params={"cmd": "echo ran"},
            options=RunOptions(queue_offline=2.0, retries=0),
        )
        first = await engine.wait(run_id)  # returns once only offline-queued hosts remain
        assert first.state == "waiting"
        assert first.counts == {"ok": 1, "queued": 3}
        assert all(h.queued_until for h in first.hosts if h.state == "queued")
        assert len(rec.of(HostQueuedOffline)) == 3
        relay.online.add(("acme", "branch"))
        engine.bus.publish(AgentPresenceChanged(client="acme", site="branch", online=True))
        final = await engine.wait(run_id, include_offline=True)
    states = {h.host: h.state for h in final.hosts}
    assert [states[h.full_name] for h in back] == ["ok", "ok"]
    assert states[never[0].full_name] == "expired"
    assert [e.host for e in rec.of(HostExpired)] == [never[0].full_name]
    assert final.state == "finished" and final.exit_code == 5
    ok_rows = await HostRun.filter(run_id=run_id, state="ok")
    assert all(r.stdout == "ran\n" for r in ok_rows)


async def test_offline_queue_survives_engine_restart(db, ssh_server) -> None:
    relay = SwitchableRelay()
    hosts = relayed(ssh_server, "branch", 2)
    async with engine_for(db, ssh_server, hosts, relay=relay) as (engine, _):
        run_id = await engine.start_run(
            "command",
            "all",
            params={"cmd": "echo later"},
            options=RunOptions(queue_offline=3600, retries=0),
        )
        assert (await engine.wait(run_id)).state == "waiting"
    run = await Run.get(id=run_id)
    assert (run.state, run.owner) == ("waiting", "")  # released for any engine to adopt
    relay.online.add(("acme", "branch"))
    async with engine_for(db, ssh_server, hosts, relay=relay, probe_interval=0.2) as (engine, _):
        # the new engine adopted the waiting run at start; its periodic probe finds the hosts
        final = await engine.wait(run_id, include_offline=True)
    assert final.state == "finished" and final.counts == {"ok": 2}


async def test_unreachable_without_queue_is_final_and_auth_errors_never_queue(
    db, ssh_server
) -> None:
    relay = SwitchableRelay()
    offline = relayed(ssh_server, "branch", 1)
    bad_user = dataclasses.replace(make_hosts(ssh_server, 1)[0], name="baduser", username="nobody")
    async with engine_for(db, ssh_server, [*offline, bad_user], relay=relay) as (engine, _):
        plain = await engine.start_run(
            "command", "branch-*", params={"cmd": "true"}, options=RunOptions(retries=0)
        )
        assert (await engine.wait(plain)).counts == {"unreachable": 1}
        queued = await engine.start_run(
            "command", "baduser", params={"cmd": "true"}, options=RunOptions(queue_offline=60)
        )
        summary = await engine.wait(queued)
    # an authentication failure is not "offline": it is unreachable at once, never retried
    assert summary.state == "finished" and summary.counts == {"unreachable": 1}
    assert summary.hosts[0].attempts == 1


async def test_running_engine_adopts_a_run_released_later(db, ssh_server) -> None:
    relay = SwitchableRelay()
    hosts = relayed(ssh_server, "branch", 1)
    async with engine_for(db, ssh_server, hosts, relay=relay, probe_interval=0.2) as (daemon, _):
        async with engine_for(db, ssh_server, hosts, relay=relay, adopt=False) as (cli, _):
            run_id = await cli.start_run(
                "command",
                "all",
                params={"cmd": "true"},
                options=RunOptions(queue_offline=3600, retries=0),
            )
            assert (await cli.wait(run_id)).state == "waiting"
        relay.online.add(("acme", "branch"))

        async def finished() -> bool:
            return (await Run.get(id=run_id)).state == "finished"

        await until(finished)
        assert run_id not in daemon._drivers  # adopted, run and let go
    assert (await HostRun.get(run_id=run_id)).state == "ok"
