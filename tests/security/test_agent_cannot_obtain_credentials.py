"""An agent cannot obtain credentials: host logins pass through it encrypted, end to end.

The site agent forwards the core's SSH connection to a LAN host as opaque bytes (DESIGN.md §1:
SSH inside SSH). Here the core logs in to a host through relay and agent with every kind of vault
secret a task uses: a login password, a sudo (become) password, a password on stdin, and a secret
in the environment. A tap between the agent and the host records every byte the agent sends to
and receives from the LAN, which is all the agent ever handles of that connection; the agent's
logs and its state directory are searched too, and so are the relay's record and registry. None
may hold any secret, in any common encoding. The tap's record starts with both SSH banners, so it
demonstrably is the inner connection.

tests/relay/test_relay_security.py::test_relay_learns_nothing proves the same for the relay with a
key login; tests/relay/test_relay_session.py proves the agent executes nothing and refuses targets
outside its allowlist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mssp.connectors.ssh import SSHConnector
from relay.client import AgentTunnel
from tests.connectors.conftest import ssh_options
from tests.connectors.test_ssh_become import PASSWORD, USER, sudo_sandbox
from tests.relay.helpers import Recorder, connect_through, enrol, make_rig, running
from tests.relay.test_relay_security import encodings_of
from tests.sshserver import ssh_test_server

__all__ = ["sudo_sandbox"]  # a fixture, used by name


@dataclass
class Tap:
    """A TCP relay on loopback that records both directions of every connection."""

    port: int = 0
    sent_to_host: bytearray = field(default_factory=bytearray)
    from_host: bytearray = field(default_factory=bytearray)
    connections: int = 0


@contextlib.asynccontextmanager
async def tap_to(port: int) -> AsyncIterator[Tap]:
    tap = Tap()
    pumps: set[asyncio.Task[None]] = set()

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: bytearray):
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                log += data
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tap.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        for args in ((reader, up_writer, tap.sent_to_host), (up_reader, writer, tap.from_host)):
            task = asyncio.create_task(pump(*args))
            pumps.add(task)
            task.add_done_callback(pumps.discard)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    tap.port = server.sockets[0].getsockname()[1]
    try:
        yield tap
    finally:
        server.close()
        for task in list(pumps):
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        await server.wait_closed()


def _files(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


async def test_agent_cannot_obtain_credentials(
    sudo_sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    login = "LoginCanary-" + secrets.token_hex(12)
    on_stdin = "StdinCanary-" + secrets.token_hex(12)
    in_env = "EnvCanary-" + secrets.token_hex(12)
    recorder = Recorder()
    (tmp_path / "relay").mkdir()
    rig = await make_rig(tmp_path / "relay", observer=recorder)
    try:
        async with (
            ssh_test_server(username=USER, password=login, command_wrapper=sudo_sandbox) as host,
            tap_to(host.port) as tap,
        ):
            site = await enrol(rig, "acme/hq", ports=[tap.port])
            async with running(site.agent()), rig.client() as rc:
                agent_conn = await connect_through(rc, site, rig.core_key)
                options = ssh_options(host, key=False, port=tap.port, become_password=PASSWORD)
                async with SSHConnector(options, tunnel=AgentTunnel(agent_conn)) as conn:
                    became = await conn.run("id -u", become=True)
                    read = await conn.run("cat | wc -c", become=True, stdin=on_stdin)
                    env = await conn.run(
                        'printf %s "$API_TOKEN" | wc -c', env={"API_TOKEN": in_env}
                    )
                agent_conn.close()
                await agent_conn.wait_closed()
    finally:
        await rig.server.stop()
    # The work was done through the agent, with every secret delivered.
    assert became.stdout == "0\n", became
    assert read.stdout.strip() == str(len(on_stdin)) and env.stdout.strip() == str(len(in_env))
    assert [a.method for a in host.auth_log if a.accepted] == ["password"]
    assert tap.connections == 1
    assert tap.sent_to_host.startswith(b"SSH-2.0-") and tap.from_host.startswith(b"SSH-2.0-")
    assert len(tap.sent_to_host) > 2000 and len(tap.from_host) > 2000
    # Nothing the agent or the relay handled or kept holds a secret.
    haystacks = {
        "agent -> host": bytes(tap.sent_to_host),
        "host -> agent": bytes(tap.from_host),
        "agent state": _files(site.state_dir),
        "relay record": recorder.blob(),
        "relay registry": rig.config.registry_path.read_bytes(),
        "logs": "\n".join(r.getMessage() for r in caplog.records).encode(),
    }
    hits = [
        (where, secret[:10], form)
        for secret in (login, PASSWORD, on_stdin, in_env)
        for form, needle in encodings_of(secret.encode()).items()
        for where, data in haystacks.items()
        if needle in data
    ]
    assert hits == []
