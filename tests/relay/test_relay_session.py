"""End to end through relay and agent: nested SSH, allowlist, agent refusals, presence, drain."""

from __future__ import annotations

import asyncio
import time

import asyncssh
import pytest

from relay.agent import AgentState
from relay.client import lost_reason
from relay.errors import RelayUnavailableError
from tests.relay.helpers import connect_target, connect_through, enrol, running, target_server


async def test_commands_reach_an_allowed_host_through_relay_and_agent(rig, tmp_path):
    async with target_server(tmp_path / "root") as target:
        site = await enrol(rig, "acme/hq", ports=[target.port])
        async with running(site.agent()), rig.client() as rc:
            agent = await connect_through(rc, site, rig.core_key)
            host = await connect_target(agent, target)
            result = await host.run("echo ok; echo $((6*7)) >&2; exit 3")
            assert (result.stdout, result.stderr, result.exit_status) == ("ok\n", "42\n", 3)
            result = await host.run("tr a-z A-Z", input="relayed stdin\n")
            assert result.stdout == "RELAYED STDIN\n"
            presence = {p.site_id: p for p in await rc.presence()}["acme/hq"]
            assert presence.online and presence.sessions == 1
            assert presence.rtt_ms is not None and 0 <= presence.rtt_ms < 1000
            host.close()
            agent.close()


async def test_target_outside_allowlist_is_refused_with_the_reason(rig, tmp_path):
    async with target_server(tmp_path / "root") as target:
        site = await enrol(rig, "acme/hq", networks=["10.9.0.0/16"], ports=[target.port, 22])
        async with running(site.agent()), rig.client() as rc:
            agent = await connect_through(rc, site, rig.core_key)
            # an address literal outside the networks
            with pytest.raises(asyncssh.ChannelOpenError, match="outside this agent's allowed"):
                await connect_target(agent, target)
            # a port outside the list, on an allowed network
            with pytest.raises(asyncssh.ChannelOpenError, match="port 2222 is not in"):
                await agent.open_connection("10.9.0.5", 2222)
            # a name that resolves outside the networks
            with pytest.raises(asyncssh.ChannelOpenError, match="resolves outside"):
                await agent.open_connection("localhost", target.port)
            agent.close()


async def test_agent_executes_nothing_and_forwards_nothing_else(rig):
    site = await enrol(rig, "acme/hq")
    async with running(site.agent()), rig.client() as rc:
        agent = await connect_through(rc, site, rig.core_key)
        for attempt in (
            agent.run("id"),
            agent.create_process(term_type="xterm"),
            agent.start_sftp_client(),
        ):
            with pytest.raises((asyncssh.ChannelOpenError, asyncssh.SFTPError)):
                await attempt
        with pytest.raises(asyncssh.ChannelListenError):
            await agent.forward_remote_port("", 0, "127.0.0.1", 22)
        with pytest.raises(asyncssh.ChannelOpenError):
            await agent.open_unix_connection("/run/docker.sock")
        agent.close()


async def test_agent_refuses_any_other_client_key(rig):
    from relay.client import connect_agent

    site = await enrol(rig, "acme/hq")
    async with running(site.agent()), rig.client() as rc:
        key = await rc.verified_agent_key(site.site, site.binding_secret)
        tunnel = await rc.open_site(site.site)
        with pytest.raises(asyncssh.PermissionDenied):
            await connect_agent(tunnel, key, asyncssh.generate_private_key("ssh-ed25519"))


async def test_offline_site_gives_a_clear_error(rig):
    await enrol(rig, "acme/hq")
    async with rig.client() as rc:
        with pytest.raises(RelayUnavailableError, match="agent offline"):
            await rc.open_site("acme/hq")


async def test_presence_stream_shows_online_then_offline(rig):
    site = await enrol(rig, "acme/hq")
    async with rig.client() as rc:
        events = rc.watch_presence()
        first = await asyncio.wait_for(anext(events), 5)
        assert (first.site_id, first.online) == ("acme/hq", False)
        agent = site.agent()
        async with running(agent):
            seen = await asyncio.wait_for(anext(events), 5)
            assert seen.online and seen.since is not None
        while True:
            event = await asyncio.wait_for(anext(events), 5)
            if not event.online:
                break
        assert event.last_seen is not None and time.time() - event.last_seen < 10
        await events.aclose()


async def test_drain_waits_for_open_sessions_and_refuses_new_ones(rig, tmp_path):
    async with target_server(tmp_path / "root") as target:
        site = await enrol(rig, "acme/hq", ports=[target.port])
        agent = site.agent()
        run = asyncio.create_task(agent.run())
        async with rig.client() as rc:
            while agent.state is not AgentState.ONLINE:
                await asyncio.sleep(0.01)
            conn = await connect_through(rc, site, rig.core_key)
            host = await connect_target(conn, target)
            stopping = asyncio.create_task(agent.stop(drain_timeout=10))
            while agent.state is not AgentState.DRAINING:
                await asyncio.sleep(0.01)
            # open sessions keep working while draining...
            assert (await host.run("echo still")).stdout == "still\n"
            # ...new ones are refused by the relay
            for _ in range(100):
                if {p.site_id: p for p in await rc.presence()}["acme/hq"].draining:
                    break
                await asyncio.sleep(0.02)
            with pytest.raises(RelayUnavailableError, match="draining"):
                await rc.open_site("acme/hq")
            assert not stopping.done()
            host.close()
            conn.close()
            await asyncio.wait_for(stopping, 10)
            assert await asyncio.wait_for(run, 10) is AgentState.STOPPED


async def test_relay_death_mid_run_gives_a_clear_reason(rig, tmp_path):
    async with target_server(tmp_path / "root") as target:
        site = await enrol(rig, "acme/hq", ports=[target.port])
        async with running(site.agent()), rig.client() as rc:
            agent = await connect_through(rc, site, rig.core_key)
            host = await connect_target(agent, target)
            running_cmd = asyncio.create_task(host.run("sleep 30"))
            await asyncio.sleep(0.2)
            start = time.monotonic()
            await rig.server.kill()
            result = await asyncio.wait_for(running_cmd, 5)
            # no exit status: the command's fate is unknown, and the reason is kept
            assert result.exit_status is None
            await asyncio.wait_for(agent.wait_closed(), 5)
            assert time.monotonic() - start < 2
            reason = lost_reason(agent)
            assert isinstance(reason, RelayUnavailableError)
            assert "relay" in str(reason)
            await rig.restart()
