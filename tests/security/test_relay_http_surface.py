"""The relay's HTTP surface is exactly the documented routes; everything else is refused.

tests/relay/test_relay_security.py covers path variants of /healthz, /v1/join and /v1/agent, a
silent or unauthenticated peer on /v1/agent and /v1/core, and the health answer. This file adds:
the route table itself must equal the one documented in docs/security.md (a new route fails here
until it is documented with its rule); every websocket route, including /v1/session and
/v1/connect, gives a stranger one refusal and a close and nothing else; and path variants and
request-target forms of the two routes not covered there.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from pathlib import Path

import aiohttp
import asyncssh
import pytest

from relay import protocol, tls
from relay.server import ROUTES
from tests.relay.helpers import Recorder, make_rig

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
WS_ROUTES = ["/v1/agent", "/v1/session", "/v1/core", "/v1/connect"]


@pytest.fixture
async def rig(tmp_path: Path):
    rig = await make_rig(tmp_path, observer=Recorder())
    try:
        yield rig
    finally:
        await rig.server.stop()


def documented_routes() -> set[tuple[str, str]]:
    """Rows of the route table in docs/security.md: | `METHOD /path` | rule |."""
    rows = re.findall(
        r"^\|\s*`(GET|POST|PUT|DELETE|HEAD|OPTIONS|PATCH) (/\S*)`\s*\|", DOC.read_text(), re.M
    )
    return set(rows)


async def test_relay_http_surface_is_exactly_the_documented_routes(rig) -> None:
    registered = {
        (route.method, route.resource.canonical)
        for route in rig.server._runner.app.router.routes()  # type: ignore[attr-defined]
        if route.method != "HEAD"  # aiohttp adds HEAD to GET routes; the middleware refuses it
    }
    assert registered == ROUTES
    assert documented_routes() == ROUTES, "docs/security.md must list every relay route"


def _stranger_hello(endpoint: str) -> dict[str, object]:
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    hello: dict[str, object] = {"t": "hello", "sig": protocol.sign(stranger, b"x" * 10)}
    if endpoint != "/v1/core":
        hello["site"] = "acme/hq"
    if endpoint == "/v1/session":
        hello["session"] = "s" * 32
    if endpoint in ("/v1/core", "/v1/connect"):
        hello["key"] = protocol.normalise_key(stranger)
    return hello


@pytest.mark.parametrize("endpoint", WS_ROUTES)
async def test_relay_websocket_routes_give_a_stranger_one_refusal_and_close(rig, endpoint) -> None:
    received: list[aiohttp.WSMessage] = []
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(
            f"wss://127.0.0.1:{rig.server.port}{endpoint}", ssl=tls.fingerprint(rig.pin)
        ) as ws:
            challenge = await asyncio.wait_for(ws.receive(), 5)
            protocol.decode(challenge.data, protocol.CHALLENGE, "challenge")
            await ws.send_str(protocol.encode(_stranger_hello(endpoint)))
            while True:
                msg = await asyncio.wait_for(ws.receive(), 10)
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
                received.append(msg)
    assert len(received) == 1, received
    refusal = protocol.decode(received[0].data, protocol.REFUSAL, "refusal")
    assert refusal["code"] == "auth" and refusal["reason"] == "authentication failed"


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/v1/session/"),
        ("GET", "/v1//session"),
        ("GET", "/v1/%73ession"),
        ("GET", "/v1/x/../session"),
        ("GET", "/v1/Session"),
        ("GET", "/v1/session?site=acme/hq"),
        ("POST", "/v1/session"),
        ("GET", "/v1/connect/"),
        ("GET", "/v1/connect/.."),
        ("GET", "/v1/%2e/connect"),
        ("GET", "/v1/connect#x"),
        ("GET", "/v1/connect%00"),
        ("DELETE", "/v1/connect"),
        ("GET", "/v1/core;x"),
        ("GET", "/v1/core%2f"),
        ("GET", "https://127.0.0.1/v1/core"),
        ("GET", "/healthz?x=1"),
        ("TRACE", "/healthz"),
        ("CONNECT", "127.0.0.1:22"),
        ("GET", "/v2/agent"),
        ("GET", "/metrics"),
        ("GET", "/.well-known/security.txt"),
    ],
)
async def test_relay_http_surface_refuses_everything_else(rig, method: str, target: str) -> None:
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cafile=str(rig.config.cert_path))
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", rig.server.port, ssl=ctx, server_hostname="127.0.0.1"
    )
    writer.write(
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
    )
    status = await asyncio.wait_for(reader.readline(), 5)
    rest = await asyncio.wait_for(reader.read(4096), 5)
    writer.close()
    assert status.split()[1] in (b"400", b"404", b"405"), status
    # a plain refusal: never an upgrade, a challenge, or a stack trace
    assert b"challenge" not in rest and b"Traceback" not in rest
