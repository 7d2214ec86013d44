"""The core's authenticated admin channel on the relay (``/v1/core``): requests and presence.

Operations (each a JSON request ``{"t":"req","id":N,"op":...}`` answered by ``{"t":"res",...}``):
``register`` (a site's admission hash and expiry: one join token), ``revoke`` (cut and refuse a
site's agent), ``enrolment`` (the agent key and its opaque proof, for the core to verify),
``presence`` (all sites now), ``watch`` (then ``{"t":"presence",...}`` pushed on every change).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from relay import protocol
from relay.errors import RelayProtocolError

if TYPE_CHECKING:
    from relay.server import RelayServer

log = logging.getLogger("relay.admin")


class AdminSession:
    """One authenticated core on the admin channel."""

    def __init__(self, server: RelayServer, ws: web.WebSocketResponse, channel: str) -> None:
        self.server, self.ws, self.channel = server, ws, channel
        self._queue: asyncio.Queue[str | None] | None = None
        self._writer: asyncio.Task[None] | None = None

    async def serve(self) -> None:
        async for msg in self.ws:
            if msg.type != WSMsgType.TEXT:
                return
            self.server.observe(self.channel, "in", msg.data)
            try:
                op = protocol.decode(
                    msg.data,
                    {
                        "t": protocol.one_of("req"),
                        "id": lambda v: v,
                        "op": protocol.one_of(*protocol.REQUEST),
                        **_ANY_ARGS,
                    },
                    "request",
                )["op"]
                request = protocol.decode(msg.data, protocol.REQUEST[op], f"{op} request")
            except RelayProtocolError as exc:
                await self._send({"t": "error", "code": "protocol", "reason": str(exc)[:200]})
                return
            try:
                data = await self._handle(op, request)
            except RelayProtocolError as exc:
                await self._send(
                    {"t": "res", "id": request["id"], "ok": False, "error": str(exc)[:200]}
                )
                continue
            await self._send({"t": "res", "id": request["id"], "ok": True, "data": data})
            if op == "watch":
                for site in self._known_sites():
                    self._queue_put(
                        protocol.encode({"t": "presence", **self.server.hub.presence(site)})
                    )

    async def close(self) -> None:
        if self._queue is not None:
            self.server.hub.watchers.discard(self._queue)
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    def _known_sites(self) -> list[str]:
        return sorted(set(self.server.registry.data.sites) | set(self.server.hub.agents))

    def _queue_put(self, text: str) -> None:
        if self._queue is not None:
            self._queue.put_nowait(text)

    async def _send(self, message: dict[str, Any]) -> None:
        await self.server.send(self.ws, self.channel, message)

    async def _handle(self, op: str, request: dict[str, Any]) -> Any:
        registry, hub = self.server.registry, self.server.hub
        if op == "register":
            registry.register_admission(
                request["site"], request["admission_hash"], request["expires_at"]
            )
            log.info("site %s: join token registered", request["site"])
            return {"site": request["site"]}
        if op == "revoke":
            registry.revoke(request["site"])
            await hub.cut_site(request["site"], "site revoked by the core")
            log.info("site %s: revoked", request["site"])
            return {"site": request["site"]}
        if op == "enrolment":
            rec = registry.site(request["site"])
            if rec is None:
                raise RelayProtocolError(f"unknown site {request['site']}")
            return {
                "site": rec.site_id,
                "agent_key": rec.agent_key,
                "proof": rec.proof,
                "joined_at": rec.joined_at,
                "revoked": rec.revoked,
            }
        if op == "presence":
            return {"sites": hub.all_presence(list(registry.data.sites))}
        # watch
        if self._queue is None:
            self._queue = asyncio.Queue()
            hub.watchers.add(self._queue)
            self._writer = asyncio.create_task(self._write_presence())
        return {}

    async def _write_presence(self) -> None:
        assert self._queue is not None
        while True:
            text = await self._queue.get()
            if text is None:  # dropped by the hub for not keeping up
                await self.ws.close(code=4009, message=b"presence stream overflow")
                return
            self.server.observe(self.channel, "out", text)
            await self.ws.send_str(text)


# The first pass only finds the op; the op's own schema is then applied strictly.
_ANY_ARGS: dict[str, Any] = {
    name: (lambda v: v)
    for schema in protocol.REQUEST.values()
    for name in schema
    if name not in ("t", "id", "op")
}
