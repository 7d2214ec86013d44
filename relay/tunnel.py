"""A WebSocket-backed asyncio transport, and the tunnel object asyncssh accepts as ``tunnel=``.

Used by both ends: the core passes a ``WebSocketTunnel`` to ``asyncssh.connect(tunnel=...)`` and the
agent to ``asyncssh.connect_reverse(tunnel=...)``. Each websocket binary message carries raw SSH
bytes; the writer joins small writes into messages of up to ``MAX_JOIN`` bytes. Awaiting
``send_bytes`` gives end-to-end backpressure (pause_writing/resume_writing) without a buffer of
our own growing. Failures keep their reason: ``connection_lost`` receives a RelayUnavailableError.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from relay.errors import RelayProtocolError, RelayUnavailableError

MAX_JOIN = 256 * 1024
HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024
CLOSE_FLUSH_TIMEOUT = 5.0


class WebSocketTransport(asyncio.Transport):
    """An asyncio.Transport whose bytes travel as binary messages on one websocket."""

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, protocol: asyncio.Protocol, *, label: str
    ) -> None:
        super().__init__()
        self._ws = ws
        self._protocol = protocol
        self._label = label
        self._buffer = bytearray()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._paused = False
        self._reading = asyncio.Event()
        self._reading.set()
        self._lost_called = False
        self._closer: asyncio.Future[Any] | None = None
        self._reader = asyncio.create_task(self._read_loop(), name=f"ws-read {label}")
        self._writer = asyncio.create_task(self._write_loop(), name=f"ws-write {label}")

    # asyncio.Transport API -------------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        self._buffer += data
        self._wakeup.set()
        if not self._paused and len(self._buffer) > HIGH_WATER:
            self._paused = True
            self._protocol.pause_writing()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def can_write_eof(self) -> bool:
        return False

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Flush what is queued, then close the websocket."""
        if self._closing:
            return
        self._closing = True
        self._wakeup.set()

    def abort(self) -> None:
        self._closing = True
        self._buffer.clear()
        self._reader.cancel()
        self._writer.cancel()
        # abort() is synchronous; the websocket close handshake finishes in this owned task.
        self._closer = asyncio.ensure_future(self._ws.close())
        self._lost(None)

    def pause_reading(self) -> None:
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    def is_reading(self) -> bool:
        return self._reading.is_set()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        # No socket: asyncssh then skips its TCP socket options. peername is a label only.
        if name == "peername":
            return (self._label, 0)
        if name == "sockname":
            return ("websocket", 0)
        return default

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    # internals -------------------------------------------------------------------------------
    def _lost(self, exc: Exception | None) -> None:
        if not self._lost_called:
            self._lost_called = True
            asyncio.get_running_loop().call_soon(self._protocol.connection_lost, exc)

    async def _read_loop(self) -> None:
        exc: Exception | None = None
        try:
            while True:
                await self._reading.wait()
                msg = await self._ws.receive()
                if msg.type == aiohttp.WSMsgType.BINARY:
                    self._protocol.data_received(msg.data)
                elif msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.CLOSED,
                ):
                    if not self._closing:
                        exc = RelayUnavailableError(f"{self._label}: the relay closed the stream")
                    break
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    exc = RelayUnavailableError(f"{self._label}: relay stream failed: {msg.data}")
                    break
                else:
                    exc = RelayProtocolError(f"{self._label}: unexpected text on a data stream")
                    break
        except asyncio.CancelledError:
            return
        except Exception as err:  # anything from the protocol or the socket ends the stream
            exc = RelayUnavailableError(f"{self._label}: relay stream failed: {err}")
        self._closing = True
        self._writer.cancel()
        with contextlib.suppress(Exception):
            await self._ws.close()
        self._lost(exc)

    async def _write_loop(self) -> None:
        try:
            while True:
                if not self._buffer:
                    if self._closing:
                        break
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                if len(self._buffer) <= MAX_JOIN:  # the common case: take it all, no memmove
                    chunk = bytes(self._buffer)
                    self._buffer.clear()
                else:
                    chunk = bytes(self._buffer[:MAX_JOIN])
                    del self._buffer[:MAX_JOIN]
                await self._ws.send_bytes(chunk)
                if self._paused and len(self._buffer) <= LOW_WATER:
                    self._paused = False
                    self._protocol.resume_writing()
        except asyncio.CancelledError:
            return
        except Exception as err:
            self._reader.cancel()
            self._lost(RelayUnavailableError(f"{self._label}: relay stream failed: {err}"))
            return
        # Graceful close: everything was flushed above.
        self._reader.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws.close(), CLOSE_FLUSH_TIMEOUT)
        self._lost(None)


Opener = Callable[[], Awaitable[aiohttp.ClientWebSocketResponse]]


class WebSocketTunnel:
    """An asyncssh tunnel: ``create_connection`` runs the SSH protocol over one websocket.

    ``opener`` returns an already authenticated websocket (the relay handshake is done by the
    caller); the tunnel is single-use, as each relay session carries exactly one SSH connection.
    """

    def __init__(self, opener: Opener, *, label: str) -> None:
        self._opener = opener
        self._label = label
        self._used = False

    def __repr__(self) -> str:
        return f"WebSocketTunnel({self._label!r})"

    async def create_connection(
        self, session_factory: Callable[[], asyncio.Protocol], host: str = "", port: int = 0
    ) -> tuple[WebSocketTransport, asyncio.Protocol]:
        if self._used:
            raise RelayUnavailableError(f"{self._label}: this relay session was already used")
        self._used = True
        ws = await self._opener()
        protocol = session_factory()
        transport = WebSocketTransport(ws, protocol, label=self._label)
        protocol.connection_made(transport)
        return transport, protocol

    # asyncssh calls these on tunnels it owns; ours holds nothing beyond the one transport.
    def close(self) -> None:
        return None

    async def wait_closed(self) -> None:
        return None
