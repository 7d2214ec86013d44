"""ConnectionManager: pooled connections to hosts, limits, backoff, and the choice of path.

``async with manager.connection(host) as conn`` hands out a live Connector. The connection stays
open for the next run (closed after ``settings.idle_close`` idle seconds). While a block holds a
connection it counts against the global limit (``settings.forks``) and its client's limit
(``settings.per_client_limit``). One connection attempt per host at a time; transient failures
are retried with capped, jittered exponential backoff; authentication and host-key errors never.

The path: ``host.via == "direct"`` dials the address; ``"relay"`` asks the ``PathProvider`` for a
tunnel (an object with asyncssh's ``create_connection`` shape, FIELD-NOTES §1) and the connector
dials through it. Without a provider a relayed host raises ``RelayUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mssp.config import Settings
from mssp.connectors.base import ConnectOptions, Connector, HostKeyInfo
from mssp.errors import ConfigError, ConnectError, RelayUnavailable
from mssp.inventory import HostRecord

ConnectorFactory = Callable[
    [HostRecord, ConnectOptions, Any, Callable[[HostKeyInfo], Awaitable[None]]], Connector
]
"""(host, options, tunnel or None, on_new_host_key) -> an unconnected Connector."""


@dataclass(frozen=True)
class Credentials:
    """What logging in to one host needs. Decrypted at the moment of use; never shown."""

    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    private_key_passphrase: str | None = field(default=None, repr=False)
    become_password: str | None = field(default=None, repr=False)


class CredentialResolver(Protocol):
    async def resolve(self, host: HostRecord) -> Credentials: ...


class HostKeyStore(Protocol):
    async def pinned(self, host: HostRecord) -> list[str]: ...

    async def pin(self, host: HostRecord, key: HostKeyInfo) -> None: ...


class PathProvider(Protocol):
    """The seam for the relay: a tunnel to a relayed host's site, or None when it is offline."""

    async def tunnel_for(self, host: HostRecord) -> object | None: ...


@dataclass
class ConnectionStats:
    """Counters for tests, benchmarks and the status view."""

    handshakes: int = 0
    """Connections established (each a full login)."""
    reuses: int = 0
    """Times a pooled connection served a block without a new login."""
    failures: int = 0
    """Connection attempts that failed."""
    retries: int = 0
    """Attempts made after a transient failure."""
    idle_closed: int = 0
    open: int = 0
    """Connections open now."""
    held: int = 0
    """Blocks holding a connection now."""
    max_held: int = 0


@dataclass
class _Slot:
    """Per-host pool entry."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    connector: Connector | None = None
    users: int = 0
    last_used: float = 0.0


class ConnectionManager:
    """Pooled, limited connections to inventory hosts. One per event loop; close with aclose()."""

    def __init__(
        self,
        settings: Settings,
        *,
        credentials: CredentialResolver,
        host_keys: HostKeyStore,
        relay: PathProvider | None = None,
        connector_factory: ConnectorFactory | None = None,
        trusted_ca_keys: Sequence[str] = (),
        connect_attempts: int = 3,
        backoff_base: float = 0.5,
        backoff_cap: float = 15.0,
        max_open: int | None = None,
    ) -> None:
        self.settings = settings
        self.credentials = credentials
        self.host_keys = host_keys
        self.relay = relay
        self.connector_factory = connector_factory or default_connector_factory(settings)
        self.trusted_ca_keys = tuple(trusted_ca_keys)
        self.connect_attempts = max(1, connect_attempts)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        #: idle connections beyond this are closed, least recently used first
        # Fewer than the hosts a repeated run touches would make LRU eviction miss on every host
        # (a cyclic access pattern): a 500-host fleet reconnected all 500 each run with 400.
        self.max_open = max_open or max(1024, settings.forks * 4)
        self.stats = ConnectionStats()
        self._global = asyncio.Semaphore(settings.forks)
        self._per_client: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(settings.per_client_limit)
        )
        self._slots: dict[tuple[Any, ...], _Slot] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    async def __aenter__(self) -> ConnectionManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- the public block ------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def connection(self, host: HostRecord) -> AsyncIterator[Connector]:
        """A live connector for ``host``, held (and counted against the limits) in the block."""
        self._check_open()
        async with self._per_client[host.client], self._global:
            self._check_open()
            slot = self._slots.setdefault(_key(host), _Slot())
            async with slot.lock:
                connector = await self._ensure(host, slot)
                slot.users += 1
            self.stats.held += 1
            self.stats.max_held = max(self.stats.max_held, self.stats.held)
            try:
                yield connector
            finally:
                self.stats.held -= 1
                slot.users -= 1
                slot.last_used = time.monotonic()
                if not connector.is_connected and slot.connector is connector and not slot.users:
                    await self._drop(slot)

    async def aclose(self) -> None:
        """Close every connection and the idle reaper. Idempotent."""
        self._closed = True
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
        slots = list(self._slots.values())
        self._slots.clear()
        await asyncio.gather(*(self._drop(slot) for slot in slots), return_exceptions=True)

    def _check_open(self) -> None:
        if self._closed:
            error = ConnectError("the connection manager is closed")
            error.retryable = False
            raise error

    # ---- connecting ---------------------------------------------------------------------------
    async def _ensure(self, host: HostRecord, slot: _Slot) -> Connector:
        if slot.connector is not None and slot.connector.is_connected:
            self.stats.reuses += 1
            return slot.connector
        if slot.connector is not None:
            await self._drop(slot)
        attempt = 0
        while True:
            try:
                connector = await self._connect_once(host)
                break
            except ConnectError as exc:
                self.stats.failures += 1
                attempt += 1
                if not exc.retryable or attempt >= self.connect_attempts:
                    raise
            self.stats.retries += 1
            await asyncio.sleep(self.backoff_delay(attempt))
        if self._closed:  # aclose() ran while this attempt was in flight: leave nothing open
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connector.close(), 10)
            self._check_open()
        slot.connector = connector
        slot.last_used = time.monotonic()
        self.stats.handshakes += 1
        self.stats.open += 1
        await self._evict_idle()
        self._start_reaper()
        return connector

    def backoff_delay(self, attempt: int) -> float:
        """Equal-jitter exponential backoff: half fixed, half random, capped."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _connect_once(self, host: HostRecord) -> Connector:
        tunnel = await self._path(host)
        creds = await self.credentials.resolve(host)
        pinned = tuple(await self.host_keys.pinned(host)) if host.transport == "ssh" else ()
        options = self.options_for(host, creds, pinned)

        async def pin(key: HostKeyInfo) -> None:
            await self.host_keys.pin(host, key)

        connector = self.connector_factory(host, options, tunnel, pin)
        try:
            await connector.connect()
        except BaseException:
            with contextlib.suppress(Exception):
                await connector.close()
            raise
        return connector

    async def _path(self, host: HostRecord) -> object | None:
        if host.via == "direct":
            return None
        if host.via != "relay":
            raise ConfigError(f"{host.full_name}: unresolved path {host.via!r}")
        if self.relay is None:
            error = RelayUnavailable(
                "no relay is configured for relayed sites", host=host.full_name
            )
            error.retryable = False  # configuration, not a passing condition: retrying is useless
            raise error
        try:
            # not asyncio.wait_for: on Python 3.11 it can lose a cancel (cpython#86296)
            async with asyncio.timeout(self.settings.connect_timeout):
                tunnel = await self.relay.tunnel_for(host)
        except TimeoutError:
            raise RelayUnavailable(
                "the relay did not answer in time", host=host.full_name
            ) from None
        if tunnel is None:
            raise RelayUnavailable("the site's agent is offline", host=host.full_name)
        return tunnel

    def options_for(
        self, host: HostRecord, creds: Credentials, pinned: tuple[str, ...]
    ) -> ConnectOptions:
        cas = self.trusted_ca_keys + tuple(
            line for line in host.options.get("ssh_ca_keys", "").splitlines() if line.strip()
        )
        return ConnectOptions(
            host=host.full_name,
            address=host.address,
            port=host.port,
            username=host.username,
            password=creds.password,
            private_key=creds.private_key,
            private_key_passphrase=creds.private_key_passphrase,
            become_password=creds.become_password,
            pinned_host_keys=pinned,
            trusted_ca_keys=cas,
            host_key_policy=host.options.get("host_key_policy", self.settings.host_key_policy),
            connect_timeout=self.settings.connect_timeout,
            keepalive_interval=self.settings.keepalive_interval,
            output_cap=self.settings.output_cap,
            extra=dict(host.options),
        )

    # ---- closing --------------------------------------------------------------------------------
    async def _drop(self, slot: _Slot) -> None:
        connector, slot.connector = slot.connector, None
        if connector is None:
            return
        self.stats.open -= 1
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connector.close(), 10)

    async def _evict_idle(self) -> None:
        excess = self.stats.open - self.max_open
        if excess <= 0:
            return
        idle = sorted(
            (s for s in self._slots.values() if s.connector is not None and not s.users),
            key=lambda s: s.last_used,
        )
        for slot in idle[:excess]:
            await self._drop(slot)

    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(
                self._reap(), name="mssp-connection-reaper"
            )

    async def _reap(self) -> None:
        """Close connections idle for idle_close seconds; ends when nothing is open."""
        interval = min(max(self.settings.idle_close / 4, 0.05), 30.0)
        while self.stats.open > 0:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for key, slot in list(self._slots.items()):
                idle = now - slot.last_used >= self.settings.idle_close
                if slot.connector is not None and not slot.users and idle:
                    if slot.lock.locked():
                        continue
                    await self._drop(slot)
                    self.stats.idle_closed += 1
                if slot.connector is None and not slot.users and not slot.lock.locked():
                    self._slots.pop(key, None)


def raise_fd_limit(settings: Settings) -> int:
    """Raise this process's open-files soft limit toward its hard limit, enough for the pool
    (``max(1024, forks * 4)`` connections) plus the database and logs; the new soft limit.

    Many systems start processes at a soft limit of 1024: with a pool that size, a large run
    would fail its last connections with EMFILE, which would read as unreachable hosts."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(1024, settings.forks * 4) + 256
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            return wanted
    return soft


def _key(host: HostRecord) -> tuple[Any, ...]:
    # A changed address, port, user, transport or path gets a connection of its own.
    return (host.full_name, host.transport, host.address, host.port, host.username, host.via)


def default_connector_factory(settings: Settings) -> ConnectorFactory:
    """SSH for "ssh" hosts; the WinRM connector (imported on first use) for "winrm" hosts."""

    def make(
        host: HostRecord,
        options: ConnectOptions,
        tunnel: Any,
        on_new_host_key: Callable[[HostKeyInfo], Awaitable[None]],
    ) -> Connector:
        if host.transport == "ssh":
            from mssp.connectors.ssh import SSHConnector

            return SSHConnector(
                options,
                tunnel=tunnel,
                on_new_host_key=on_new_host_key,
                command_timeout=settings.command_timeout,
            )
        if host.transport == "winrm":
            if tunnel is not None:
                raise RelayUnavailable(
                    "WinRM through a relay is not available yet", host=host.full_name
                )
            from mssp.connectors.winrm import WinRMConnector

            return WinRMConnector(options)
        raise ConfigError(f"{host.full_name}: unknown transport {host.transport!r}")

    return make
