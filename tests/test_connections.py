"""ConnectionManager on real in-process SSH servers: pooling, limits, backoff, paths, aclose."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from mssp.config import Settings
from mssp.connections import ConnectionManager, Credentials
from mssp.connectors.base import CommandResult, ConnectOptions, Connector, HostKeyInfo
from mssp.errors import AuthError, ConfigError, ConnectError, HostKeyError, RelayUnavailable
from mssp.inventory import HostRecord
from tests.sshserver import SSHTestServer, generate_key, public_openssh, ssh_test_server


class MemoryHostKeys:
    """HostKeyStore in memory (the database one is tested with the store)."""

    def __init__(self, pins: Mapping[str, list[str]] | None = None) -> None:
        self.pins: dict[str, list[str]] = {k: list(v) for k, v in (pins or {}).items()}
        self.pinned_events: list[tuple[str, HostKeyInfo]] = []

    async def pinned(self, host: HostRecord) -> list[str]:
        return list(self.pins.get(host.full_name, []))

    async def pin(self, host: HostRecord, key: HostKeyInfo) -> None:
        self.pins.setdefault(host.full_name, []).append(key.public_key)
        self.pinned_events.append((host.full_name, key))


class ServerCredentials:
    """Every host logs in with the test server's client key (or its password)."""

    def __init__(self, srv: SSHTestServer, *, password: str | None = None) -> None:
        self.srv = srv
        self.password = password
        self.resolved = 0

    async def resolve(self, host: HostRecord) -> Credentials:
        self.resolved += 1
        if self.password is not None:
            return Credentials(password=self.password)
        return Credentials(private_key=self.srv.client_key)


def hosts_for(
    srv: SSHTestServer, client: str = "acme", count: int | None = None
) -> list[HostRecord]:
    ports = srv.ports if count is None else srv.ports[:count]
    return [
        HostRecord(
            client=client, site="hq", name=f"h{i}", address=srv.address, port=p, username="mssp"
        )
        for i, p in enumerate(ports)
    ]


def make_settings(settings: Settings, **changes: Any) -> Settings:
    return settings.replace(connect_timeout=5.0, **changes)


def pinned_for(srv: SSHTestServer, hosts: list[HostRecord]) -> MemoryHostKeys:
    return MemoryHostKeys({h.full_name: [srv.host_key_public] for h in hosts})


@pytest.fixture
async def server() -> AsyncIterator[SSHTestServer]:
    async with ssh_test_server(ports=6) as srv:
        yield srv


async def test_the_pool_reuses_connections(server: SSHTestServer, settings: Settings) -> None:
    host = hosts_for(server, count=1)[0]
    creds = ServerCredentials(server)
    async with ConnectionManager(
        make_settings(settings), credentials=creds, host_keys=pinned_for(server, [host])
    ) as manager:
        for i in range(5):
            async with manager.connection(host) as conn:
                assert (await conn.run(f"echo {i}")).stdout == f"{i}\n"
        assert (manager.stats.handshakes, manager.stats.reuses) == (1, 4)
        assert server.handshakes == 1 and creds.resolved == 1


async def test_one_connection_attempt_per_host_at_a_time(
    server: SSHTestServer, settings: Settings
) -> None:
    host = hosts_for(server, count=1)[0]

    async def use(manager: ConnectionManager) -> CommandResult:
        async with manager.connection(host) as conn:
            return await conn.run("echo same")

    async with ConnectionManager(
        make_settings(settings),
        credentials=ServerCredentials(server),
        host_keys=pinned_for(server, [host]),
    ) as manager:
        results = await asyncio.gather(*(use(manager) for _ in range(10)))
    assert all(r.stdout == "same\n" for r in results)
    assert server.handshakes == 1 and manager.stats.handshakes == 1


async def test_accept_new_pins_through_the_store(server: SSHTestServer, settings: Settings) -> None:
    host = hosts_for(server, count=1)[0]
    store = MemoryHostKeys()
    async with ConnectionManager(
        make_settings(settings), credentials=ServerCredentials(server), host_keys=store
    ) as manager:
        async with manager.connection(host) as conn:
            await conn.run("true")
    assert store.pins == {host.full_name: [server.host_key_public]}
    # with the pin in place, a strict manager connects and a new key is refused
    strict = make_settings(settings, host_key_policy="strict")
    async with ConnectionManager(
        strict, credentials=ServerCredentials(server), host_keys=store
    ) as manager:
        async with manager.connection(host) as conn:
            assert (await conn.run("echo ok")).ok
    assert len(store.pinned_events) == 1


async def test_changed_host_key_is_never_retried_and_sends_no_credential(
    server: SSHTestServer, settings: Settings
) -> None:
    host = hosts_for(server, count=1)[0]
    store = MemoryHostKeys({host.full_name: [public_openssh(generate_key())]})
    async with ConnectionManager(
        make_settings(settings),
        credentials=ServerCredentials(server),
        host_keys=store,
        connect_attempts=5,
        backoff_base=0.01,
    ) as manager:
        with pytest.raises(HostKeyError):
            async with manager.connection(host):
                pass
        assert manager.stats.retries == 0
    assert server.handshakes == 1 and server.auth_log == []


async def test_auth_error_is_never_retried(server: SSHTestServer, settings: Settings) -> None:
    host = hosts_for(server, count=1)[0]
    async with ConnectionManager(
        make_settings(settings),
        credentials=ServerCredentials(server, password="wrong"),
        host_keys=pinned_for(server, [host]),
        connect_attempts=5,
        backoff_base=0.01,
    ) as manager:
        with pytest.raises(AuthError):
            async with manager.connection(host):
                pass
        assert (manager.stats.failures, manager.stats.retries) == (1, 0)
    assert server.handshakes == 1


async def test_transient_failures_are_retried_with_backoff(
    server: SSHTestServer, settings: Settings
) -> None:
    host = hosts_for(server, count=1)[0]
    await server.stop()
    manager = ConnectionManager(
        make_settings(settings),
        credentials=ServerCredentials(server),
        host_keys=pinned_for(server, [host]),
        connect_attempts=8,
        backoff_base=0.1,
        backoff_cap=0.4,
    )

    async def come_back() -> None:
        await asyncio.sleep(0.5)
        await server.start()

    revive = asyncio.create_task(come_back())
    try:
        async with manager.connection(host) as conn:
            assert (await conn.run("echo back")).stdout == "back\n"
        assert manager.stats.retries >= 2 and manager.stats.handshakes == 1
    finally:
        await revive
        await manager.aclose()


async def test_retries_give_up_after_the_attempts(settings: Settings) -> None:
    async with ssh_test_server() as srv:
        host = hosts_for(srv)[0]
    manager = ConnectionManager(
        make_settings(settings),
        credentials=ServerCredentials(srv),
        host_keys=pinned_for(srv, [host]),
        connect_attempts=3,
        backoff_base=0.01,
    )
    with pytest.raises(ConnectError) as info:
        async with manager.connection(host):
            pass
    assert info.value.retryable
    assert (manager.stats.failures, manager.stats.retries) == (3, 2)
    await manager.aclose()


def test_backoff_is_capped_and_jittered(settings: Settings) -> None:
    manager = ConnectionManager(
        settings,
        credentials=None,  # type: ignore[arg-type]
        host_keys=None,  # type: ignore[arg-type]
        backoff_base=1.0,
        backoff_cap=8.0,
    )
    delays = [manager.backoff_delay(n) for n in range(1, 8) for _ in range(50)]
    assert all(0.5 <= d <= 8.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 100  # jittered
    assert max(manager.backoff_delay(20) for _ in range(50)) <= 8.0
    assert min(manager.backoff_delay(20) for _ in range(50)) >= 4.0


async def test_reconnect_after_the_server_restarts(
    server: SSHTestServer, settings: Settings
) -> None:
    host = hosts_for(server, count=1)[0]
    async with ConnectionManager(
        make_settings(settings),
        credentials=ServerCredentials(server),
        host_keys=pinned_for(server, [host]),
    ) as manager:
        async with manager.connection(host) as conn:
            assert (await conn.run("echo one")).ok
        await server.restart()
        await asyncio.sleep(0.1)
        async with manager.connection(host) as conn:
            assert (await conn.run("echo two")).stdout == "two\n"
        assert manager.stats.handshakes == 2
    assert server.handshakes == 2


async def _measure(manager: ConnectionManager, hosts: list[HostRecord]) -> tuple[Counter, int]:
    now: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    total_peak = 0

    async def work(host: HostRecord) -> None:
        nonlocal total_peak
        async with manager.connection(host) as conn:
            now[host.client] += 1
            peak[host.client] = max(peak[host.client], now[host.client])
            total_peak = max(total_peak, sum(now.values()))
            await conn.run("sleep 0.2")
            now[host.client] -= 1

    await asyncio.gather(*(work(h) for h in hosts))
    return peak, total_peak


async def test_the_per_client_limit_holds(settings: Settings) -> None:
    async with ssh_test_server(ports=12) as srv:
        hosts = hosts_for(srv, "acme", 8) + [
            HostRecord("tiny", "hq", f"t{i}", srv.address, p, "mssp")
            for i, p in enumerate(srv.ports[8:])
        ]
        async with ConnectionManager(
            make_settings(settings, per_client_limit=3, forks=100),
            credentials=ServerCredentials(srv),
            host_keys=pinned_for(srv, hosts),
        ) as manager:
            peak, total = await _measure(manager, hosts)
    assert peak == Counter({"acme": 3, "tiny": 3})
    assert total == 6  # the two clients' work overlapped
    assert srv.max_concurrent_commands == 6


async def test_the_global_limit_holds(settings: Settings) -> None:
    async with ssh_test_server(ports=10) as srv:
        hosts = hosts_for(srv, "acme", 5) + [
            HostRecord("beta", "hq", f"b{i}", srv.address, p, "mssp")
            for i, p in enumerate(srv.ports[5:])
        ]
        async with ConnectionManager(
            make_settings(settings, per_client_limit=20, forks=4),
            credentials=ServerCredentials(srv),
            host_keys=pinned_for(srv, hosts),
        ) as manager:
            _, total = await _measure(manager, hosts)
            assert manager.stats.max_held == 4
    assert total == 4


async def test_idle_connections_are_closed(server: SSHTestServer, settings: Settings) -> None:
    hosts = hosts_for(server, count=3)
    async with ConnectionManager(
        make_settings(settings, idle_close=0.3),
        credentials=ServerCredentials(server),
        host_keys=pinned_for(server, hosts),
    ) as manager:
        for host in hosts:
            async with manager.connection(host) as conn:
                await conn.run("true")
        assert server.open_connections == 3
        await asyncio.sleep(1.0)
        assert manager.stats.open == 0 and manager.stats.idle_closed == 3
        assert server.open_connections == 0
        assert manager._reaper is None or manager._reaper.done()


def _socket_fds() -> set[str]:
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:"):
                found.add(target)
    return found


async def test_aclose_leaves_no_task_and_no_socket(
    server: SSHTestServer, settings: Settings
) -> None:
    hosts = hosts_for(server)
    sockets_before = _socket_fds()
    tasks_before = asyncio.all_tasks()
    manager = ConnectionManager(
        make_settings(settings),
        credentials=ServerCredentials(server),
        host_keys=pinned_for(server, hosts),
    )

    async def use(host: HostRecord) -> None:
        async with manager.connection(host) as conn:
            await conn.run("echo x")

    await asyncio.gather(*(use(h) for h in hosts))
    assert manager.stats.open == len(hosts) and len(_socket_fds()) > len(sockets_before)
    await manager.aclose()
    await manager.aclose()  # idempotent
    await asyncio.sleep(0.1)  # the server side notices the closes
    assert asyncio.all_tasks() - tasks_before == set()
    assert _socket_fds() == sockets_before
    assert server.open_connections == 0 and manager.stats.open == 0
    with pytest.raises(ConnectError):
        async with manager.connection(hosts[0]):
            pass


async def test_aclose_during_a_connection_attempt_leaves_nothing(
    server: SSHTestServer, settings: Settings
) -> None:
    host = hosts_for(server, count=1)[0]
    tasks_before = asyncio.all_tasks()
    sockets_before = _socket_fds()
    server.auth_delay = 0.5
    manager = ConnectionManager(
        make_settings(settings),
        credentials=ServerCredentials(server),
        host_keys=pinned_for(server, [host]),
    )

    async def use() -> None:
        async with manager.connection(host):
            pytest.fail("a closed manager handed out a connection")

    attempt = asyncio.create_task(use())
    await asyncio.sleep(0.2)
    await manager.aclose()
    with pytest.raises(ConnectError, match="closed"):
        await attempt
    await asyncio.sleep(0.1)
    assert asyncio.all_tasks() - tasks_before == set()
    assert _socket_fds() == sockets_before and server.open_connections == 0
    assert manager.stats.open == 0


async def test_a_relayed_host_without_a_relay_is_unavailable(
    server: SSHTestServer, settings: Settings
) -> None:
    host = HostRecord("acme", "branch", "r1", server.address, server.port, "mssp", via="relay")
    async with ConnectionManager(
        make_settings(settings), credentials=ServerCredentials(server), host_keys=MemoryHostKeys()
    ) as manager:
        with pytest.raises(RelayUnavailable):
            async with manager.connection(host):
                pass
    assert server.handshakes == 0


class SSHJumpProvider:
    """A PathProvider whose tunnel is a real asyncssh connection to a forwarding server."""

    def __init__(self, jump: SSHTestServer, *, online: bool = True) -> None:
        self.jump = jump
        self.online = online
        self.conn: asyncssh.SSHClientConnection | None = None

    async def tunnel_for(self, host: HostRecord) -> object | None:
        if not self.online:
            return None
        if self.conn is None:
            self.conn = await asyncssh.connect(
                self.jump.address,
                self.jump.port,
                username=self.jump.username,
                client_keys=[asyncssh.import_private_key(self.jump.client_key)],
                known_hosts=([asyncssh.import_public_key(self.jump.host_key_public)], [], []),
                agent_path=None,
                config=None,
            )
        return self.conn

    async def aclose(self) -> None:
        if self.conn is not None:
            self.conn.close()
            await self.conn.wait_closed()


async def test_a_relayed_host_is_reached_through_the_path_provider(
    server: SSHTestServer, settings: Settings
) -> None:
    host = HostRecord("acme", "branch", "r1", "127.0.0.1", server.port, "mssp", via="relay")
    async with ssh_test_server() as jump:
        jump.allow_forwarding = True
        provider = SSHJumpProvider(jump)
        try:
            async with ConnectionManager(
                make_settings(settings),
                credentials=ServerCredentials(server),
                host_keys=pinned_for(server, [host]),
                relay=provider,
            ) as manager:
                async with manager.connection(host) as conn:
                    assert (await conn.run("echo via-tunnel")).stdout == "via-tunnel\n"
            assert jump.forwards == [("127.0.0.1", server.port)]
            assert server.handshakes == 1
            provider.online = False
            async with ConnectionManager(
                make_settings(settings),
                credentials=ServerCredentials(server),
                host_keys=pinned_for(server, [host]),
                relay=provider,
                connect_attempts=1,
            ) as manager:
                with pytest.raises(RelayUnavailable, match="offline"):
                    async with manager.connection(host):
                        pass
        finally:
            await provider.aclose()


class PasswordOnly:
    async def resolve(self, host: HostRecord) -> Credentials:
        return Credentials(password="pw")


class RecordingConnector(Connector):
    """Stands in for the WinRM connector to show the factory hook; it reaches no host."""

    transport = "winrm"

    def __init__(self, options: ConnectOptions) -> None:
        self.options = options
        self.connected = False

    async def connect(self) -> None:
        self.connected = True

    async def close(self) -> None:
        self.connected = False

    @property
    def is_connected(self) -> bool:
        return self.connected

    async def run(self, command: str, **kwargs: Any) -> CommandResult:  # type: ignore[override]
        return CommandResult(command, 0, self.options.address, "", 0.0)

    async def put_file(self, local: Path, remote: str, *, mode: int | None = None) -> Any:
        raise NotImplementedError

    async def get_file(self, remote: str, local: Path) -> Any:
        raise NotImplementedError


async def test_transport_selects_the_connector_through_the_factory(settings: Settings) -> None:
    made: list[tuple[str, ConnectOptions]] = []

    def factory(host: HostRecord, options: ConnectOptions, tunnel: Any, pin: Any) -> Connector:
        made.append((host.transport, options))
        return RecordingConnector(options)

    host = HostRecord(
        "acme",
        "hq",
        "win1",
        "win1.acme.lan",
        5986,
        "Administrator",
        transport="winrm",
        options={"winrm_scheme": "https"},
    )

    async with ConnectionManager(
        settings, credentials=PasswordOnly(), host_keys=MemoryHostKeys(), connector_factory=factory
    ) as manager:
        async with manager.connection(host) as conn:
            assert (await conn.run("hostname")).stdout == "win1.acme.lan"
    ((transport, options),) = made
    assert transport == "winrm" and options.extra["winrm_scheme"] == "https"
    assert options.password == "pw" and "pw" not in repr(options)


async def test_an_unknown_transport_is_a_config_error(settings: Settings) -> None:
    host = HostRecord("acme", "hq", "x", "127.0.0.1", 1, "u", transport="telnet")
    async with ConnectionManager(
        settings,
        credentials=PasswordOnly(),
        host_keys=MemoryHostKeys(),
    ) as manager:
        with pytest.raises(ConfigError):
            async with manager.connection(host):
                pass


def test_the_open_files_limit_is_raised_for_the_pool() -> None:
    """A soft limit of 256 would fail a large run's last connections with EMFILE ("unreachable")."""
    import resource
    import subprocess
    import sys

    code = (
        "import resource\n"
        "from mssp.config import load_settings\n"
        "from mssp.connections import raise_fd_limit\n"
        "print(raise_fd_limit(load_settings({'MSSP_FORKS': '500'})),"
        " resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    out = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    expected = 500 * 4 + 256 if hard == resource.RLIM_INFINITY else min(500 * 4 + 256, hard)
    assert [int(v) for v in out] == [expected, expected]
