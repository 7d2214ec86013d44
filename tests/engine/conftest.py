"""Engine test fixtures: a real in-process SSH server, hosts that reach it, and an Engine with a
real ConnectionManager (credentials and host keys from small in-test implementations of the
CredentialResolver and HostKeyStore protocols)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from mssp.config import Settings
from mssp.connections import ConnectionManager, Credentials
from mssp.connectors.base import HostKeyInfo
from mssp.engine import Engine, StaticHosts
from mssp.events import Event, EventBus
from mssp.inventory import HostRecord
from tests.sshserver import SSHTestServer, ssh_test_server


class ServerCredentials:
    """CredentialResolver: every host logs in with the test server's client key."""

    def __init__(self, srv: SSHTestServer) -> None:
        self.srv = srv

    async def resolve(self, host: HostRecord) -> Credentials:
        return Credentials(private_key=self.srv.client_key)


class ServerHostKeys:
    """HostKeyStore: every host's pinned key is the test server's."""

    def __init__(self, srv: SSHTestServer) -> None:
        self.srv = srv

    async def pinned(self, host: HostRecord) -> list[str]:
        return [self.srv.host_key_public]

    async def pin(self, host: HostRecord, key: HostKeyInfo) -> None:
        raise AssertionError("a pinned host asked to pin a new key")


def make_hosts(
    srv: SSHTestServer, count: int, *, clients: Sequence[str] = ("acme",), site: str = "hq"
) -> list[HostRecord]:
    """``count`` hosts spread over ``clients`` in turn, all served by ``srv``."""
    return [
        HostRecord(
            client=clients[i % len(clients)],
            site=site,
            name=f"h{i:03d}",
            address=srv.address,
            port=srv.ports[i % len(srv.ports)],
            username=srv.username,
        )
        for i in range(count)
    ]


def closed_port_host(name: str = "dead", client: str = "acme") -> HostRecord:
    """A host whose port refuses connections (port 1 on loopback: nothing listens there)."""
    return HostRecord(client=client, site="hq", name=name, address="127.0.0.1", port=1)


class LoopbackTunnel:
    """An asyncssh tunnel that dials the target directly (stands in for a site's agent)."""

    async def create_connection(self, session_factory: Any, host: str, port: int) -> Any:
        import asyncio

        return await asyncio.get_running_loop().create_connection(session_factory, host, port)


class SwitchableRelay:
    """PathProvider: sites are offline (no tunnel) until ``online`` lists them."""

    def __init__(self) -> None:
        self.online: set[tuple[str, str]] = set()
        self.asked: list[str] = []

    async def tunnel_for(self, host: HostRecord) -> object | None:
        self.asked.append(host.full_name)
        return LoopbackTunnel() if (host.client, host.site) in self.online else None


@pytest.fixture
async def ssh_server() -> AsyncIterator[SSHTestServer]:
    async with ssh_test_server() as srv:
        yield srv


class Recorder:
    """Every event published on the bus, in order (a lossless subscriber)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@contextlib.asynccontextmanager
async def engine_for(
    settings: Settings,
    srv: SSHTestServer,
    hosts: Sequence[HostRecord],
    relay: Any = None,
    **engine_kw: Any,
) -> AsyncIterator[tuple[Engine, Recorder]]:
    """An Engine over ``hosts`` with a real ConnectionManager reaching ``srv``."""
    import asyncio

    bus = EventBus()
    recorder = Recorder()
    ready = asyncio.Event()

    async def record() -> None:
        async with bus.subscribe(lossless=True) as queue:
            ready.set()
            while True:
                recorder.events.append(await queue.get())

    listener = asyncio.create_task(record())
    await ready.wait()
    manager = ConnectionManager(
        settings,
        credentials=ServerCredentials(srv),
        host_keys=ServerHostKeys(srv),
        relay=relay,
        connect_attempts=1,
    )
    engine = Engine(settings, connections=manager, bus=bus, hosts=StaticHosts(hosts), **engine_kw)
    try:
        await engine.start()
        yield engine, recorder
    finally:
        await engine.aclose()
        await manager.aclose()
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
