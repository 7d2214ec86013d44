"""The relay server: authenticates agents and cores over WebSocket and splices their streams.

HTTP surface (exact raw paths; anything else, including `/x/..`, `%2e%2e`, `//`, a trailing `/`,
a query string or another method, gets 404 before any handler runs):

==========  ===============  ================================================================
GET         /healthz         unauthenticated liveness: the body is ``ok`` and nothing else
POST        /v1/join         agent enrolment: admission secret (checked against a stored hash,
                             single use, expiring), agent public key, opaque proof; rate limited
GET         /v1/agent        WebSocket, agent control link: signed challenge (agent key)
GET         /v1/session      WebSocket, one agent session stream: signed challenge + session id
GET         /v1/core         WebSocket, core admin channel: signed challenge (a core key)
GET         /v1/connect      WebSocket, one core session stream to a site: signed challenge
==========  ===============  ================================================================

Every accepted TCP connection must authenticate within ``auth_timeout`` (default 5 s) or it is
aborted, whatever it is doing (TLS handshake, slow headers, an idle websocket, a finished join).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from relay import protocol, splice, tls
from relay import token as join_token
from relay.admin import AdminSession
from relay.errors import RelayProtocolError, SiteRevokedError, TokenError
from relay.hub import AgentLink, Hub, RateLimiter, Refused
from relay.registry import Registry

log = logging.getLogger("relay.server")

Observer = Callable[[str, str, bytes], None]
"""``(channel, "in"|"out", data)``: sees every message the relay receives and sends (tests)."""

ROUTES = {
    ("GET", "/healthz"),
    ("POST", "/v1/join"),
    ("GET", "/v1/agent"),
    ("GET", "/v1/session"),
    ("GET", "/v1/core"),
    ("GET", "/v1/connect"),
}
MAX_JOIN_BODY = 8192
TLS_READ_BUFFER = 32 * 1024


def tune_tls_buffers(size: int = TLS_READ_BUFFER) -> None:
    """Shrink asyncio's per-connection TLS read buffer (256 KiB by default, all resident).

    Measured here: 292 kB per idle agent link with the default, 68 kB with 32 KiB (a TLS record is
    at most ~16 KiB, so nothing is lost). It is a process-wide asyncio setting, so only the relay's
    entry point calls it (``mssp-relay serve``); libraries embedding RelayServer may choose to.
    """
    import asyncio.sslproto

    asyncio.sslproto.SSLProtocol.max_size = size


@dataclass(frozen=True)
class RelayConfig:
    """How one relay process runs."""

    cert_path: Path
    key_path: Path
    registry_path: Path
    host: str = "127.0.0.1"
    port: int = 8443
    auth_timeout: float = 5.0
    """An unauthenticated connection is aborted after this long (promise: under 10 s)."""
    session_open_timeout: float = 10.0
    """How long a core waits for the agent to open the session stream."""
    heartbeat: float = 20.0
    join_limit: int = 10
    """Join attempts per source address per ``join_window``."""
    join_window: float = 60.0
    auth_fail_limit: int = 30
    """Failed websocket authentications per source address per ``join_window``."""


@web.middleware
async def _exact_routes(request: web.Request, handler: Any) -> web.StreamResponse:
    # raw_path is the request target as sent: no decoding, no dot-segment or slash merging.
    if (request.method, request.raw_path) not in ROUTES:
        raise web.HTTPNotFound(text="not found")
    return await handler(request)


class RelayServer:
    """One relay process: ``await start()``, ``port``, ``await stop()`` (or ``kill()`` in tests)."""

    def __init__(self, config: RelayConfig, *, observer: Observer | None = None) -> None:
        self.config = config
        self.observer = observer
        self.pin = tls.pin_of_pem_file(config.cert_path)
        self.registry = Registry(config.registry_path)
        self.hub = Hub()
        self._join_limiter = RateLimiter(config.join_limit, config.join_window)
        self._fail_limiter = RateLimiter(config.auth_fail_limit, config.join_window)
        # ids of request handlers that authenticated; each id is dropped when its gate fires
        # (the gate timer holds the handler, so an id cannot be reused before then).
        self._authed: set[int] = set()
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self.port = 0

    # lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        self.registry.lock()
        app = web.Application(middlewares=[_exact_routes], client_max_size=MAX_JOIN_BODY)
        app.router.add_get("/healthz", self._health)
        app.router.add_post("/v1/join", self._join)
        app.router.add_get("/v1/agent", self._agent_control)
        app.router.add_get("/v1/session", partial(splice.agent_session, self))
        app.router.add_get("/v1/core", self._core_control)
        app.router.add_get("/v1/connect", partial(splice.core_connect, self))
        # No access log: it would only add who-connected-when to disk, and nothing we need.
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2)
        await self._runner.setup()
        ctx = tls.server_context(self.config.cert_path, self.config.key_path)
        self._server = await asyncio.get_running_loop().create_server(
            self._protocol_factory,
            self.config.host,
            self.config.port,
            ssl=ctx,
            ssl_handshake_timeout=self.config.auth_timeout,
            reuse_address=True,
            backlog=4096,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("relay listening on %s:%d, pin %s", self.config.host, self.port, self.pin)

    async def stop(self) -> None:
        """Graceful: stop accepting, close every link (agents reconnect elsewhere/later)."""
        if self._server is not None:
            self._server.close()
        for link in list(self.hub.agents.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(link.ws.close(code=1001, message=b"relay stopping"), 2)
        await self._finish()

    async def kill(self) -> None:
        """Abrupt, like SIGKILL: every transport aborted, no goodbye (fault tests)."""
        if self._server is not None:
            self._server.close()
        assert self._runner is not None and self._runner.server is not None
        for handler in list(self._runner.server.connections):
            if handler.transport is not None:
                handler.transport.abort()
        await self._finish()

    async def _finish(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.registry.unlock()

    def _protocol_factory(self) -> Any:
        assert self._runner is not None and self._runner.server is not None
        handler = self._runner.server()
        asyncio.get_running_loop().call_later(self.config.auth_timeout, self._gate, handler)
        return handler

    def _gate(self, handler: Any) -> None:
        if id(handler) in self._authed:
            self._authed.discard(id(handler))
            return
        if handler.transport is not None:
            handler.transport.abort()

    # helpers --------------------------------------------------------------------------------
    def observe(self, channel: str, direction: str, data: bytes | str) -> None:
        if self.observer is not None:
            self.observer(channel, direction, data.encode() if isinstance(data, str) else data)

    async def send(self, ws: web.WebSocketResponse, channel: str, message: dict[str, Any]) -> None:
        text = protocol.encode(message)
        self.observe(channel, "out", text)
        await ws.send_str(text)

    async def refuse(self, ws: web.WebSocketResponse, channel: str, err: Refused) -> None:
        with contextlib.suppress(Exception):
            await self.send(ws, channel, {"t": "error", "code": err.code, "reason": err.reason})
        with contextlib.suppress(Exception):
            await ws.close(code=4001, message=err.code.encode())

    async def open_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(
            heartbeat=self.config.heartbeat,
            max_msg_size=protocol.MAX_DATA_MESSAGE,
            compress=False,
        )
        await ws.prepare(request)
        return ws

    async def authenticate(
        self, request: web.Request, ws: web.WebSocketResponse, channel: str
    ) -> dict[str, Any]:
        """Challenge, signed hello, verification. Returns the hello (with ``key`` set)."""
        ip = request.remote or "?"
        if self._fail_limiter.exhausted(ip):
            raise Refused("rate", "too many failed attempts; try again later")
        nonce = protocol.b64u(secrets.token_bytes(protocol.NONCE_BYTES))
        await self.send(ws, channel, {"t": "challenge", "v": protocol.VERSION, "nonce": nonce})
        try:
            msg = await asyncio.wait_for(ws.receive(), self.config.auth_timeout)
        except TimeoutError:
            raise Refused("timeout", "no hello in time") from None
        if msg.type != WSMsgType.TEXT:
            raise Refused("protocol", "expected a hello message")
        self.observe(channel, "in", msg.data)
        try:
            hello = protocol.decode(msg.data, protocol.HELLO, "hello")
        except RelayProtocolError as exc:
            self._fail_limiter.allow(ip)
            raise Refused("protocol", str(exc)[:200]) from None
        endpoint = request.raw_path
        needs_site = endpoint != "/v1/core"
        needs_session = endpoint == "/v1/session"
        if bool(hello["site"]) != needs_site or bool(hello["session"]) != needs_session:
            raise Refused("protocol", "hello fields do not fit this endpoint")
        if endpoint in ("/v1/agent", "/v1/session"):
            if hello["key"] is not None:
                raise Refused("protocol", "hello fields do not fit this endpoint")
            rec = self.registry.site(hello["site"])
            key = rec.agent_key if rec else None
        else:
            rec = None
            key = hello["key"] if hello["key"] in self.registry.data.cores else None
        payload = protocol.auth_payload(
            endpoint, nonce, self.pin, site=hello["site"], session=hello["session"]
        )
        if key is None or not protocol.verify(key, payload, hello["sig"]):
            self._fail_limiter.allow(ip)
            # One message for unknown site, revoked site, unknown key and bad signature alike.
            raise Refused("auth", "authentication failed")
        if rec is not None and rec.revoked:
            # Only the site's own (revoked) agent learns why: it must stop, not retry. Saying
            # "revoked" before the signature would tell a stranger which sites exist.
            raise Refused("revoked", "this site is revoked")
        self._authed.add(id(request.protocol))
        hello["key"] = key
        return hello

    # routes ---------------------------------------------------------------------------------
    async def _health(self, request: web.Request) -> web.Response:
        response = web.Response(text="ok")
        response.force_close()
        return response

    async def _join(self, request: web.Request) -> web.Response:
        def reply(status: int, body: dict[str, Any]) -> web.Response:
            response = web.json_response(body, status=status)
            response.force_close()
            self.observe("join", "out", protocol.encode(body))
            return response

        if not self._join_limiter.allow(request.remote or "?"):
            return reply(429, {"error": "too many join attempts from this address; wait a minute"})
        try:
            body = await asyncio.wait_for(request.content.read(MAX_JOIN_BODY + 1), 5)
        except TimeoutError:
            return reply(408, {"error": "join request too slow"})
        self.observe("join", "in", body)
        if len(body) > MAX_JOIN_BODY:
            return reply(413, {"error": "join request too large"})
        try:
            msg = protocol.decode(body, protocol.JOIN, "join request")
        except RelayProtocolError as exc:
            return reply(400, {"error": f"malformed join request: {exc}"[:300]})
        admission = join_token.admission_hash(protocol.unb64u(msg["admission"], size=32))
        try:
            self.registry.consume_admission(
                msg["site"], admission, msg["agent_key"], msg["proof"], now=time.time()
            )
        except (TokenError, SiteRevokedError) as exc:
            return reply(403, {"error": str(exc)})
        log.info("site %s: agent enrolled", msg["site"])
        old = self.hub.agents.get(msg["site"])
        if old is not None:  # a re-enrolment replaces the previous agent's identity
            await old.ws.close(code=4004, message=b"re-enrolled")
        return reply(200, {"ok": True, "site": msg["site"]})

    async def _agent_control(self, request: web.Request) -> web.WebSocketResponse:
        ws = await self.open_ws(request)
        channel = "agent"
        try:
            hello = await self.authenticate(request, ws, channel)
        except Refused as err:
            await self.refuse(ws, channel, err)
            return ws
        now = time.time()
        link = AgentLink(hello["site"], ws, since=now, last_seen=now)
        await self.send(ws, channel, {"t": "ok"})
        await self.hub.attach_agent(link)
        pinger = asyncio.create_task(self._ping_loop(link, channel))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    break
                self.observe(channel, "in", msg.data)
                try:
                    kind = protocol.kind(msg.data)
                    if kind == "pong":
                        pong = protocol.decode(msg.data, protocol.PONG, "pong")
                        link.last_seen = time.time()
                        if pong["n"] == link.ping_n:
                            link.rtt_ms = round((time.monotonic() - link.ping_sent) * 1000, 2)
                            self.hub.publish(link.site_id)
                    elif kind == "draining":
                        protocol.decode(msg.data, protocol.DRAINING, "draining")
                        link.draining = True
                        self.hub.publish(link.site_id)
                    else:
                        raise RelayProtocolError(f"unexpected message {kind[:20]!r}")
                except RelayProtocolError as exc:
                    await self.refuse(ws, channel, Refused("protocol", str(exc)[:200]))
                    break
        finally:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger
            self.hub.detach_agent(link)
        return ws

    async def _ping_loop(self, link: AgentLink, channel: str) -> None:
        n = 0
        while not link.ws.closed:
            n += 1
            link.ping_n, link.ping_sent = n, time.monotonic()
            try:
                await self.send(link.ws, channel, {"t": "ping", "n": n})
            except Exception:
                return
            await asyncio.sleep(self.config.heartbeat)
            if time.time() - link.last_seen > 2.5 * self.config.heartbeat:
                await link.ws.close(code=4008, message=b"no heartbeat")
                return

    async def _core_control(self, request: web.Request) -> web.WebSocketResponse:
        ws = await self.open_ws(request)
        channel = "core"
        try:
            await self.authenticate(request, ws, channel)
        except Refused as err:
            await self.refuse(ws, channel, err)
            return ws
        await self.send(ws, channel, {"t": "ok"})
        session = AdminSession(self, ws, channel)
        try:
            await session.serve()
        finally:
            await session.close()
        return ws
