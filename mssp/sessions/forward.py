"""`mssp forward`: a local port that reaches HOST:PORT through the path the core uses for that host.

- SSH hosts (direct or relayed): a ``direct-tcpip`` channel over the host's own SSH connection,
  which the connection manager opens directly or nested through the site's agent; the target
  defaults to the host's own loopback (``127.0.0.1:PORT`` as the host sees it).
- Other hosts (WinRM/RDP on Windows): relayed sites open a channel through the agent's tunnel to
  ``address:PORT``; direct hosts get a plain TCP connection to ``address:PORT``.

Each accepted local socket opens its channel explicitly, so a refusal (the agent's allowlist, or
nothing listening) is reported to the user with its reason instead of showing up as a bare EOF
(FIELD-NOTES §1). The forward is audited when it opens and when it closes (with its counters).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncssh

from mssp import audit
from mssp.connections import ConnectionManager
from mssp.errors import ConnectError, RelayUnavailable, UsageError
from mssp.inventory import HostRecord

Notice = Callable[[str], None]
Opener = Callable[[], Awaitable[tuple[Any, Any]]]
CHANNEL_WINDOW = 8 * 1024 * 1024
"""direct-tcpip channels ignore the connection's window option (FIELD-NOTES §1): set it here."""
CHUNK = 256 * 1024
OPEN_TIMEOUT = 15.0


@dataclass(frozen=True)
class ForwardStats:
    """What went through a forward."""

    connections: int
    refused: int
    """Local connections whose channel could not be opened (reason reported)."""
    bytes_out: int
    """Bytes from local clients to the target."""
    bytes_in: int
    """Bytes from the target to local clients."""


def _check_bind(bind: str) -> bool:
    """True if ``bind`` is a loopback address; UsageError if it is not an IP address."""
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        if bind == "localhost":
            return True
        raise UsageError(f"--bind must be an IP address, not {bind!r}") from None


class PortForward:
    """``async with PortForward(...) as fwd:`` listens on ``fwd.local_address`` in the block."""

    def __init__(
        self,
        manager: ConnectionManager,
        host: HostRecord,
        port: int,
        *,
        local_port: int = 0,
        bind: str = "127.0.0.1",
        target_host: str | None = None,
        notice: Notice | None = None,
        actor: str | None = None,
    ) -> None:
        if not 0 < port < 65536 or not 0 <= local_port < 65536:
            raise UsageError("ports must be between 1 and 65535")
        self.manager = manager
        self.host = host
        self.port = port
        self.local_port = local_port
        self.bind = bind
        self.loopback_only = _check_bind(bind)
        self.path = "ssh" if host.transport == "ssh" else host.via
        self.target_host = target_host or ("127.0.0.1" if host.transport == "ssh" else host.address)
        self.notice = notice or (lambda message: None)
        self.actor = actor
        self.local_address = ("", 0)
        self._stack = contextlib.AsyncExitStack()
        self._server: asyncio.base_events.Server | None = None
        self._open: Opener | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._audit_seq = 0
        self.connections = self.refused = self.bytes_out = self.bytes_in = 0

    @property
    def stats(self) -> ForwardStats:
        return ForwardStats(self.connections, self.refused, self.bytes_out, self.bytes_in)

    def describe(self) -> dict[str, Any]:
        return {
            "host": self.host.full_name,
            "local": f"{self.local_address[0]}:{self.local_address[1]}",
            "target": f"{self.target_host}:{self.port}",
            "path": self.path,
        }

    # ---- opening and closing ---------------------------------------------------------------
    async def __aenter__(self) -> PortForward:
        self._audit_seq = await audit.intent(
            "forward",
            actor=self.actor,
            client=self.host.client,
            target=self.host.full_name,
            detail={"target": f"{self.target_host}:{self.port}", "bind": self.bind},
        )
        try:
            self._open = await self._path()
            try:
                self._server = await asyncio.start_server(
                    self._accept, self.bind, self.local_port, reuse_address=True
                )
            except OSError as exc:
                raise UsageError(
                    f"cannot listen on {self.bind}:{self.local_port}: {exc.strerror}"
                ) from None
        except BaseException as exc:
            await self._stack.aclose()
            await self._outcome("failed", getattr(exc, "message", type(exc).__name__))
            raise
        sock = self._server.sockets[0].getsockname()
        self.local_address = (sock[0], sock[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)
        await self._stack.aclose()
        await self._outcome("ok", "")

    async def _outcome(self, result: str, error: str) -> None:
        await audit.outcome(
            self._audit_seq,
            "forward",
            actor=self.actor,
            client=self.host.client,
            target=self.host.full_name,
            result=result,
            detail={
                **self.describe(),
                "connections": self.connections,
                "refused": self.refused,
                "bytes_out": self.bytes_out,
                "bytes_in": self.bytes_in,
                "error": error or None,
            },
        )

    async def _path(self) -> Opener:
        """How each local connection reaches the target, chosen once."""
        host, target, port = self.host, self.target_host, self.port
        if host.transport == "ssh":
            conn = await self._stack.enter_async_context(self.manager.connection(host))
            ssh = _asyncssh_connection(conn)
            return lambda: ssh.open_connection(target, port, window=CHANNEL_WINDOW)
        if host.via == "relay":
            relay = self.manager.relay
            if relay is None:
                raise RelayUnavailable("no relay is configured", host=host.full_name)
            tunnel = await asyncio.wait_for(relay.tunnel_for(host), OPEN_TIMEOUT)
            if tunnel is None:
                raise RelayUnavailable("the site's agent is offline", host=host.full_name)
            return lambda: tunnel.open_connection(target, port, window=CHANNEL_WINDOW)  # type: ignore[attr-defined]
        return lambda: asyncio.open_connection(target, port)

    # ---- each local connection -----------------------------------------------------------------
    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        peer = writer.get_extra_info("peername")
        who = f"{peer[0]}:{peer[1]}" if peer else "local client"
        where = f"{self.target_host}:{self.port} on {self.host.full_name}"
        try:
            assert self._open is not None
            try:
                far_reader, far_writer = await asyncio.wait_for(self._open(), OPEN_TIMEOUT)
            except asyncssh.ChannelOpenError as exc:
                self.refused += 1
                self.notice(
                    f"{who}: {where} refused the connection: {exc.reason} (code {exc.code})"
                )
                return
            except (OSError, TimeoutError, asyncssh.Error) as exc:
                self.refused += 1
                reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None)
                self.notice(f"{who}: cannot reach {where}: {reason or type(exc).__name__}")
                return
            try:
                await asyncio.gather(
                    self._pump(reader, far_writer, "out"), self._pump(far_reader, writer, "in")
                )
            finally:
                far_writer.close()
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2)

    async def _pump(self, source: Any, sink: Any, direction: str) -> None:
        try:
            while data := await source.read(CHUNK):
                sink.write(data)
                await sink.drain()  # backpressure end to end: never buffer without bound
                if direction == "out":
                    self.bytes_out += len(data)
                else:
                    self.bytes_in += len(data)
            with contextlib.suppress(Exception):
                if sink.can_write_eof():
                    sink.write_eof()
        except (ConnectionError, asyncssh.Error, OSError):
            return


@contextlib.contextmanager
def stop_signals() -> Iterator[asyncio.Event]:
    """An event set by Ctrl-C, SIGTERM or SIGHUP while the block runs.

    Install it before telling the user the forward is ready, so a stop that comes right after
    the announcement still closes the forward cleanly (and audited) instead of killing it.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        yield stop
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def _asyncssh_connection(connector: object) -> asyncssh.SSHClientConnection:
    """The asyncssh connection behind an SSHConnector (a public accessor is requested from the
    SSH connector's owner; until then its documented internal ``_require``)."""
    getter = getattr(connector, "ssh_connection", None) or getattr(connector, "_require", None)
    if getter is None:
        raise ConnectError("this connection cannot forward ports")
    return getter()
