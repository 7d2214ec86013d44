"""The peer side of the relay handshake: open a pinned wss connection and prove our key.

Used by the agent (control and session streams) and by the core's RelayClient. The relay's reply is
hostile input: every message is schema-checked, and each refusal maps to one typed error.
"""

from __future__ import annotations

import asyncio

import aiohttp
import asyncssh

from relay import protocol, tls
from relay.errors import (
    RelayAuthError,
    RelayError,
    RelayProtocolError,
    RelayUnavailableError,
    SiteRevokedError,
)

_REFUSALS: dict[str, type[RelayError]] = {
    "auth": RelayAuthError,
    "rate": RelayAuthError,
    "revoked": SiteRevokedError,
    "offline": RelayUnavailableError,
    "draining": RelayUnavailableError,
    "busy": RelayUnavailableError,
    "timeout": RelayUnavailableError,
    "protocol": RelayProtocolError,
}


def raise_refusal(text: str, what: str) -> None:
    """Raise the typed error for a relay ``{"t":"error"}`` message."""
    refusal = protocol.decode(text, protocol.REFUSAL, f"{what} refusal")
    raise _REFUSALS[refusal["code"]](f"{what}: relay refused: {refusal['reason']}")


async def receive_text(ws: aiohttp.ClientWebSocketResponse, timeout: float, what: str) -> str:
    try:
        msg = await asyncio.wait_for(ws.receive(), timeout)
    except TimeoutError:
        raise RelayUnavailableError(
            f"{what}: the relay did not answer in {timeout:.0f} s"
        ) from None
    if msg.type == aiohttp.WSMsgType.TEXT:
        return msg.data
    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
        raise RelayUnavailableError(f"{what}: the relay closed the connection")
    raise RelayProtocolError(f"{what}: unexpected {msg.type.name} message from the relay")


async def open_authenticated(
    http: aiohttp.ClientSession,
    base_url: str,
    pin: str,
    endpoint: str,
    key: asyncssh.SSHKey,
    *,
    site: str | None = None,
    session: str | None = None,
    send_key: bool = False,
    timeout: float = 10.0,
    heartbeat: float | None = 20.0,
    max_msg_size: int = protocol.MAX_DATA_MESSAGE,
) -> aiohttp.ClientWebSocketResponse:
    """Connect to ``base_url + endpoint``, answer the challenge, and wait for ``ok``."""
    what = f"relay {endpoint}"
    try:
        ws = await asyncio.wait_for(
            http.ws_connect(
                base_url + endpoint,
                ssl=tls.fingerprint(pin),
                heartbeat=heartbeat,
                max_msg_size=max_msg_size,
                compress=0,
                autoping=True,
            ),
            timeout,
        )
    except aiohttp.ServerFingerprintMismatch:
        raise RelayAuthError(
            f"{what}: the relay's TLS certificate does not match the pinned one"
        ) from None
    except TimeoutError:
        raise RelayUnavailableError(f"{what}: connection timed out") from None
    except aiohttp.ClientConnectorError as exc:
        reason = exc.os_error.strerror or str(exc.os_error) or type(exc.os_error).__name__
        raise RelayUnavailableError(
            f"{what}: cannot connect to {exc.host}:{exc.port}: {reason}"
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise RelayUnavailableError(f"{what}: cannot connect: {exc}") from None
    try:
        first = await receive_text(ws, timeout, what)
        if protocol.kind(first) == "error":  # refused before the challenge (rate limit)
            raise_refusal(first, what)
        challenge = protocol.decode(first, protocol.CHALLENGE, f"{what} challenge")
        payload = protocol.auth_payload(
            endpoint, challenge["nonce"], pin, site=site, session=session
        )
        hello = {
            "t": "hello",
            "site": site,
            "session": session,
            "key": protocol.normalise_key(key) if send_key else None,
            "sig": protocol.sign(key, payload),
        }
        await ws.send_str(protocol.encode(hello))
        reply = await receive_text(ws, timeout, what)
        if protocol.kind(reply) == "error":
            raise_refusal(reply, what)
        protocol.decode(reply, protocol.WELCOME, f"{what} welcome")
    except BaseException:
        await ws.close()
        raise
    return ws
