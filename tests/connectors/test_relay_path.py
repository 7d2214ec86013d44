"""RelayPaths end to end in one process: a real TLS relay, a real agent, a real SSH server as the
site's host, the core's state in the database and the vault. Commands, transfers, refusals,
impersonation, a relay killed mid-command, revocation and presence."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import time
from pathlib import Path

import asyncssh
import pytest

from mssp import audit
from mssp.config import Settings
from mssp.connections import ConnectionManager
from mssp.connectors import relay_ops, relay_store
from mssp.connectors.relay import RelayPaths, manager_options
from mssp.connectors.relay_connector import RelayedSSHConnector, RelayedWinRMConnector
from mssp.errors import HostKeyError, RelayUnavailable, TargetRefused
from mssp.events import AgentPresenceChanged, EventBus
from mssp.lab.winrm_pki import make_test_pki
from mssp.store import inventory as inv
from mssp.store.credentials import VaultCredentialResolver, add_credential
from mssp.store.hostkeys import DbHostKeyStore
from mssp.vault import FLOOR, Vault
from relay.agent import Agent, AgentConfig, AgentState, Backoff, join, load_host_key
from relay.allowlist import Allowlist
from tests.connectors.winrm_fixtures import PASSWORD as WIN_PASSWORD
from tests.connectors.winrm_fixtures import USER as WIN_USER
from tests.connectors.winrm_fixtures import running_endpoint
from tests.relay.helpers import make_rig, running
from tests.sshserver import ssh_test_server

PASS = "correct horse battery"


@pytest.fixture(scope="module")
def windows(tmp_path_factory: pytest.TempPathFactory):
    """The SIMULATED Windows host (recorded WS-Management replies, not Windows), HTTPS."""
    pki = make_test_pki(tmp_path_factory.mktemp("winrm-pki"))
    with running_endpoint(tls=pki) as (_, endpoint):
        yield endpoint, pki


@pytest.fixture
async def world(db: Settings, tmp_path: Path, windows):
    """Relay + enrolled, running agent + one SSH host in the 'site' (127.0.0.1) + inventory."""
    vault = Vault.create(db.vault_path, PASS, kdf=FLOOR)
    (tmp_path / "relay").mkdir()
    rig = await make_rig(tmp_path / "relay")
    async with ssh_test_server() as srv:
        endpoint = await relay_store.set_endpoint(vault, rig.url, rig.pin)
        rig.server.registry.add_core(endpoint.core_public_key)
        await inv.create_client("acme", "Acme")
        await inv.create_site("acme", "branch", reach="relay")
        await add_credential(
            vault, client_slug="acme", name="default", kind="ssh-key", secret=srv.client_key
        )
        await inv.create_host(
            "acme", "branch", "web1", address="127.0.0.1", port=srv.port, username=srv.username
        )
        # 127.0.0.2 is outside the agent's allowlist (127.0.0.1/32)
        await inv.create_host(
            "acme", "branch", "outside", address="127.0.0.2", port=srv.port, username=srv.username
        )
        endpoint, pki = windows
        await add_credential(vault, client_slug="acme", name="win", kind="password",
                             secret=WIN_PASSWORD, username=WIN_USER)  # fmt: skip
        await inv.create_host("acme", "branch", "win1", address="127.0.0.1", port=endpoint.port,
                              username=WIN_USER, transport="winrm", credential="win",
                              options={"cert_sha256": pki.cert_sha256})  # fmt: skip
        paths = RelayPaths(db, vault, timeout=5)
        enrolment = await relay_ops.enroll(paths, "acme/branch")
        state = tmp_path / "agent"
        await join(
            enrolment.token, state, Allowlist.parse(["127.0.0.1/32"], [srv.port, endpoint.port])
        )
        agent = Agent(AgentConfig.load(state), load_host_key(state), backoff=Backoff(0.2, 1.0))
        manager = ConnectionManager(
            db.replace(connect_timeout=5.0),
            credentials=VaultCredentialResolver(vault),
            host_keys=DbHostKeyStore(),
            connect_attempts=1,
            **manager_options(paths),
        )
        try:
            async with running(agent):
                yield {
                    "vault": vault,
                    "rig": rig,
                    "srv": srv,
                    "paths": paths,
                    "agent": agent,
                    "manager": manager,
                    "enrolment": enrolment,
                    "settings": db,
                    "state": state,
                }
        finally:
            await manager.aclose()
            await paths.aclose()
            with contextlib.suppress(Exception):
                await rig.server.stop()


async def test_enrolment_is_opaque_and_pins_the_agent_key(world) -> None:
    enrolment = world["enrolment"]
    assert enrolment.token.startswith("mssp-join1.")
    assert "acme" not in enrolment.relay_site_id and "branch" not in enrolment.relay_site_id
    assert enrolment.relay_site_id in world["rig"].server.registry.data.sites
    host = await inv.get_host("acme/branch/web1")
    async with world["manager"].connection(host) as conn:
        assert isinstance(conn, RelayedSSHConnector)
    record = await relay_store.agent_for("acme", "branch")
    assert record is not None and record.agent_key.startswith("ssh-ed25519 ")
    own = load_host_key(world["state"]).export_public_key().decode().strip()
    assert record.agent_key == own


async def test_commands_and_transfers_through_the_relay(world, tmp_path: Path) -> None:
    manager, paths = world["manager"], world["paths"]
    host = await inv.get_host("acme/branch/web1")
    async with manager.connection(host) as conn:
        result = await conn.run("echo relayed-$((40+2))")
        assert result.exit_status == 0 and result.stdout.strip() == "relayed-42"
        data = os.urandom(300_000)
        local = tmp_path / "up.bin"
        local.write_bytes(data)
        remote = str(tmp_path / "remote-up.bin")  # the test server shares this machine's disk
        put = await conn.put_file(local, remote)
        assert put.sha256 == hashlib.sha256(data).hexdigest()
        back = await conn.get_file(remote, tmp_path / "down.bin")
        assert (tmp_path / "down.bin").read_bytes() == data and back.size == len(data)
    # a second host connection reuses the one agent connection
    async with manager.connection(host) as conn:
        assert (await conn.run("true")).exit_status == 0
    assert paths.agent_connects == 1


async def test_target_outside_the_allowlist_is_refused_with_the_agents_reason(world) -> None:
    host = await inv.get_host("acme/branch/outside")
    with pytest.raises(TargetRefused) as info:
        async with world["manager"].connection(host):
            pass
    assert "agent:" in info.value.message and "acme/branch/outside" in info.value.message
    assert info.value.retryable is False


async def test_relay_killed_mid_command_is_unreachable_with_reason(world) -> None:
    host = await inv.get_host("acme/branch/web1")
    async with world["manager"].connection(host) as conn:
        command = asyncio.create_task(conn.run("sleep 20; echo never"))
        await asyncio.sleep(0.5)
        started = time.monotonic()
        await world["rig"].server.kill()
        with pytest.raises(RelayUnavailable) as info:
            await asyncio.wait_for(command, 10)
        assert time.monotonic() - started < 5
    assert "cut off" in info.value.message and "acme/branch/web1" in info.value.message
    assert info.value.retryable is True


async def test_forged_agent_key_is_detected_before_any_login(world) -> None:
    # the relay (its in-memory registry) is the attacker: it swaps in a key of its own
    rid = world["enrolment"].relay_site_id
    sites = world["rig"].server.registry.data.sites
    forged = asyncssh.generate_private_key("ssh-ed25519")
    sites[rid] = dataclasses.replace(
        sites[rid], agent_key=forged.export_public_key().decode().strip()
    )
    srv = world["srv"]
    before = len(srv.auth_log)
    host = await inv.get_host("acme/branch/web1")
    with pytest.raises(HostKeyError) as info:
        async with world["manager"].connection(host):
            pass
    assert "impersonation" in info.value.message
    assert len(srv.auth_log) == before  # no credential ever reached the host


async def test_revoke_cuts_the_live_agent_within_seconds(world) -> None:
    paths, agent = world["paths"], world["agent"]
    host = await inv.get_host("acme/branch/web1")
    async with world["manager"].connection(host) as conn:
        assert (await conn.run("true")).exit_status == 0
    started = time.monotonic()
    record = await relay_ops.revoke(paths, "acme/branch")
    assert record.status == "revoked"
    async with asyncio.timeout(5):
        while agent.state is not AgentState.REVOKED:
            await asyncio.sleep(0.02)
    assert time.monotonic() - started < 5
    await world["manager"].aclose()
    manager = ConnectionManager(
        world["settings"],
        credentials=VaultCredentialResolver(world["vault"]),
        host_keys=DbHostKeyStore(),
        connect_attempts=1,
        **manager_options(paths),
    )
    with pytest.raises(RelayUnavailable, match="revoked"):
        async with manager.connection(host):
            pass
    await manager.aclose()
    # enrolment and revocation are in the audit log, each as intent then outcome, no secret
    entries = [e for e in await audit.entries() if e.action.startswith("site.")]
    assert [(e.action, e.result) for e in entries] == [
        ("site.enroll", "intent"),
        ("site.enroll", "ok"),
        ("site.revoke", "intent"),
        ("site.revoke", "ok"),
    ]
    assert all(e.target == "acme/branch" for e in entries)


async def test_presence_is_stored_and_published(world) -> None:
    paths = world["paths"]
    records = await relay_ops.refresh_presence(paths)
    (record,) = records
    assert record.full_name == "acme/branch" and record.online and record.status == "online"
    assert record.online_since is not None
    bus = EventBus()
    watcher = relay_ops.PresenceWatcher(paths, bus)
    async with bus.subscribe(lossless=True) as queue:
        watcher.start()
        try:
            event = await asyncio.wait_for(queue.get(), 5)
            assert isinstance(event, AgentPresenceChanged)
            assert (event.client, event.site, event.online) == ("acme", "branch", True)
            await world["agent"].stop(drain_timeout=0.5)
            async with asyncio.timeout(5):
                while True:
                    event = await queue.get()
                    if isinstance(event, AgentPresenceChanged) and not event.online:
                        break
        finally:
            await watcher.aclose()
    stored = await relay_store.agent_for("acme", "branch")
    assert stored is not None and not stored.online and stored.last_seen is not None


async def test_winrm_through_a_local_port_over_the_agent(world) -> None:
    host = await inv.get_host("acme/branch/win1")
    async with world["manager"].connection(host) as conn:
        assert isinstance(conn, RelayedWinRMConnector)
        name = await conn.run("$env:COMPUTERNAME", check=True)
        assert name.stdout == "WIN-LAB01\r\n"
    assert world["paths"].agent_connects == 1
