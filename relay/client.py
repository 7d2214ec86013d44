"""The core's side of the relay, with no mssp imports: admin channel, presence, site tunnels.

    async with RelayClient(url, pin, core_key) as rc:
        await rc.register_token(issued)                 # after relay.token.issue(...)
        key = await rc.verified_agent_key(site, binding_secret)   # ImpersonationError if forged
        tunnel = await rc.open_site(site)               # asyncssh tunnel= to the agent's SSH server
        agent = await connect_agent(tunnel, key, client_key)
        host = await asyncssh.connect("10.0.0.5", tunnel=AgentTunnel(agent), known_hosts=...)

Everything the relay says is validated before use: the relay is not trusted with anything but
routing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncssh

from relay import handshake, protocol
from relay import token as join_token
from relay.agent_ssh import CHANNEL_PKTSIZE, CHANNEL_WINDOW, CIPHERS
from relay.errors import RelayError, RelayProtocolError, RelayUnavailableError
from relay.tunnel import WebSocketTunnel

_CLOSED = object()


@dataclass(frozen=True)
class SitePresence:
    """The relay's view of one site's agent."""

    site_id: str
    online: bool
    since: float | None
    """When the current link came up (epoch seconds)."""
    last_seen: float | None
    """Last heartbeat answer, or when it went offline."""
    rtt_ms: float | None
    """Relay-to-agent round-trip time of the last heartbeat."""
    sessions: int
    draining: bool

    @classmethod
    def from_message(cls, data: Any) -> SitePresence:
        fields = dict(data)
        fields.pop("t", None)
        msg = protocol.check(fields, protocol.PRESENCE, "presence")
        return cls(
            msg["site"],
            msg["online"],
            msg["since"],
            msg["last_seen"],
            msg["rtt_ms"],
            msg["sessions"],
            msg["draining"],
        )


@dataclass(frozen=True)
class Enrolment:
    """What the relay holds about a site's agent (unverified until checked with the proof)."""

    site_id: str
    agent_key: str | None
    proof: str | None
    joined_at: float | None
    revoked: bool


class RelayClient:
    """An authenticated core connection to the relay's admin channel."""

    def __init__(
        self,
        url: str,
        pin: str,
        core_key: asyncssh.SSHKey,
        *,
        timeout: float = 10.0,
        heartbeat: float = 20.0,
    ) -> None:
        self.url = join_token.validate_relay_url(url)
        self.pin = pin
        self._key = core_key
        self._timeout = timeout
        self._heartbeat = heartbeat
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._watchers: list[asyncio.Queue[Any]] = []
        self._watching = False
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._failure: RelayError | None = None

    async def __aenter__(self) -> RelayClient:
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        try:
            self._ws = await handshake.open_authenticated(
                self._http,
                self.url,
                self.pin,
                "/v1/core",
                self._key,
                send_key=True,
                timeout=self._timeout,
                heartbeat=self._heartbeat,
                max_msg_size=protocol.MAX_ADMIN_MESSAGE,
            )
        except BaseException:
            await self._http.close()
            raise
        self._reader = asyncio.create_task(self._read_loop(), name="relay-admin-reader")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
        self._fail(RelayUnavailableError("relay client closed"))

    # admin channel ------------------------------------------------------------------------
    def _fail(self, err: RelayError) -> None:
        self._failure = self._failure or err
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(err)
        self._pending.clear()
        for queue in self._watchers:
            queue.put_nowait(_CLOSED)

    async def _read_loop(self) -> None:
        assert self._ws is not None
        err: RelayError = RelayUnavailableError("the relay closed the admin channel")
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                kind = protocol.kind(msg.data, limit=protocol.MAX_ADMIN_MESSAGE)
                if kind == "res":
                    res = protocol.decode(
                        msg.data,
                        protocol.RESPONSE,
                        "relay response",
                        limit=protocol.MAX_ADMIN_MESSAGE,
                    )
                    fut = self._pending.pop(res["id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(res)
                elif kind == "presence":
                    event = SitePresence.from_message(
                        protocol.decode(msg.data, protocol.PRESENCE_EVENT, "presence")
                    )
                    for queue in self._watchers:
                        queue.put_nowait(event)
                elif kind == "error":
                    handshake.raise_refusal(msg.data, "relay admin channel")
                else:
                    raise RelayProtocolError(f"unexpected relay message {kind[:20]!r}")
        except RelayError as exc:
            err = exc
        except Exception as exc:  # socket-level failures end the channel with the reason
            err = RelayUnavailableError(f"relay admin channel failed: {exc}")
        self._fail(err)

    async def _request(self, op: str, **fields: Any) -> Any:
        if self._failure is not None:
            raise self._failure
        assert self._ws is not None
        request_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        await self._ws.send_str(protocol.encode({"t": "req", "id": request_id, "op": op, **fields}))
        try:
            res = await asyncio.wait_for(fut, self._timeout)
        except TimeoutError:
            self._pending.pop(request_id, None)
            raise RelayUnavailableError(f"relay did not answer {op} in time") from None
        if not res["ok"]:
            raise RelayProtocolError(f"relay refused {op}: {res['error'] or 'no reason'}")
        return res["data"]

    async def register_site(self, site_id: str, admission_hash: str, expires_at: float) -> None:
        """Register one join token's admission hash for ``site_id`` (replaces an unused one)."""
        await self._request(
            "register",
            site=protocol.site_id(site_id),
            admission_hash=admission_hash,
            expires_at=expires_at,
        )

    async def register_token(self, issued: join_token.IssuedToken) -> None:
        await self.register_site(issued.site_id, issued.admission_hash, issued.expires_at)

    async def revoke_site(self, site_id: str) -> None:
        """Cut the site's agent and sessions now, and refuse it from now on."""
        await self._request("revoke", site=protocol.site_id(site_id))

    async def enrolment(self, site_id: str) -> Enrolment:
        data = protocol.check(
            await self._request("enrolment", site=protocol.site_id(site_id)),
            protocol.ENROLMENT,
            "enrolment",
        )
        if data["site"] != site_id:
            raise RelayProtocolError("relay answered about another site")
        return Enrolment(
            data["site"], data["agent_key"], data["proof"], data["joined_at"], data["revoked"]
        )

    async def verified_agent_key(self, site_id: str, binding_secret: bytes) -> str:
        """The site's agent host key, only if its proof verifies (else ImpersonationError)."""
        rec = await self.enrolment(site_id)
        return join_token.verify_key_proof(binding_secret, site_id, rec.agent_key, rec.proof)

    async def presence(self) -> list[SitePresence]:
        data = await self._request("presence")
        if (
            not isinstance(data, dict)
            or set(data) != {"sites"}
            or not isinstance(data["sites"], list)
        ):
            raise RelayProtocolError("malformed presence answer")
        return [SitePresence.from_message(item) for item in data["sites"]]

    async def watch_presence(self) -> AsyncIterator[SitePresence]:
        """Every presence change pushed by the relay (starting with a snapshot of all sites)."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._watchers.append(queue)
        try:
            if not self._watching:
                self._watching = True
                await self._request("watch")
            while True:
                item = await queue.get()
                if item is _CLOSED:
                    raise self._failure or RelayUnavailableError("presence stream ended")
                yield item
        finally:
            self._watchers.remove(queue)

    # sessions -----------------------------------------------------------------------------
    async def open_site(self, site_id: str) -> WebSocketTunnel:
        """A spliced stream to the site's agent, as an asyncssh ``tunnel=`` (single use)."""
        assert self._http is not None
        ws = await handshake.open_authenticated(
            self._http,
            self.url,
            self.pin,
            "/v1/connect",
            self._key,
            site=protocol.site_id(site_id),
            send_key=True,
            timeout=self._timeout,
            heartbeat=self._heartbeat,
        )

        async def opened() -> aiohttp.ClientWebSocketResponse:
            return ws

        return WebSocketTunnel(opened, label=f"relay site {site_id}")


class _AgentClient(asyncssh.SSHClient):
    """Keeps why the agent connection ended, so the core can tell the user (e.g. relay died)."""

    def __init__(self) -> None:
        self.lost: Exception | None = None

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        # asyncssh forgets the owner on close; extra info survives it.
        conn.set_extra_info(relay_agent_client=self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc


def lost_reason(conn: asyncssh.SSHClientConnection) -> Exception | None:
    """Why a connection made by ``connect_agent`` closed (None while open or if closed cleanly)."""
    owner = conn.get_extra_info("relay_agent_client")
    return owner.lost if isinstance(owner, _AgentClient) else None


async def connect_agent(
    tunnel: WebSocketTunnel,
    agent_host_key: str,
    client_key: asyncssh.SSHKey,
    *,
    timeout: float = 15.0,
) -> asyncssh.SSHClientConnection:
    """The SSH connection to the agent: its host key pinned, our key offered, nothing else."""
    return await asyncio.wait_for(
        asyncssh.connect(
            "mssp-agent",
            0,
            tunnel=tunnel,
            config=None,
            client_factory=_AgentClient,
            known_hosts=([asyncssh.import_public_key(agent_host_key)], [], []),
            client_keys=[client_key],
            username="mssp",
            agent_path=None,
            agent_forwarding=False,
            x11_forwarding=False,
            encryption_algs=CIPHERS,
            keepalive_interval=20,
            keepalive_count_max=3,
            max_pktsize=CHANNEL_PKTSIZE,
        ),
        timeout,
    )


class AgentTunnel:
    """Wraps the agent connection so nested connections get a large channel window."""

    def __init__(self, conn: asyncssh.SSHClientConnection) -> None:
        self.conn = conn

    async def open_connection(
        self, host: str, port: int
    ) -> tuple[asyncssh.SSHReader[bytes], asyncssh.SSHWriter[bytes]]:
        """A byte stream to ``host:port`` on the site's LAN (e.g. under a local WinRM port).

        A refusal raises ``asyncssh.ChannelOpenError`` carrying the agent's reason.
        """
        return await self.conn.open_connection(
            host, port, encoding=None, window=CHANNEL_WINDOW, max_pktsize=CHANNEL_PKTSIZE
        )

    async def create_connection(self, session_factory: Any, host: str, port: int) -> Any:
        return await self.conn.create_connection(
            session_factory, host, port, window=CHANNEL_WINDOW, max_pktsize=CHANNEL_PKTSIZE
        )
