"""Deeply nested JSON in a relay control message or a join token must be the documented error."""

import hashlib

import pytest

from relay import protocol
from relay import token as join_token
from relay.errors import RelayProtocolError, TokenError

DEEP = "[" * 5000  # 5 KB: far under MAX_CONTROL_MESSAGE (64 KiB) and MAX_JOIN_BODY (8 KiB)


@pytest.mark.parametrize("schema", [protocol.HELLO, protocol.JOIN, protocol.PING])
def test_deeply_nested_control_message_is_a_protocol_error(schema):
    with pytest.raises(RelayProtocolError):
        protocol.decode(DEEP, schema, "fuzz")


def test_deeply_nested_message_kind_is_a_protocol_error():
    with pytest.raises(RelayProtocolError):
        protocol.kind(DEEP)


def test_deeply_nested_token_is_a_token_error():
    payload = b"[" * 1400
    text = join_token.PREFIX + protocol.b64u(payload + hashlib.sha256(payload).digest()[:4])
    assert len(text) < join_token.MAX_TOKEN_LEN
    with pytest.raises(TokenError):
        join_token.parse(text)


@pytest.mark.parametrize("message", [DEEP, '{"t":"ping","n":' + "9" * 5000 + "}", "\x00"])
async def test_one_hostile_relay_message_makes_the_agent_reconnect_not_exit(tmp_path, message):
    """A compromised relay sends one hostile control message on a live agent link."""
    import asyncio

    from tests.relay.helpers import enrol, make_rig, running

    rig = await make_rig(tmp_path)
    try:
        enrolled = await enrol(rig, "acme/hq")
        async with running(enrolled.agent()) as agent:
            link = rig.server.hub.agents["acme/hq"]
            await link.ws.send_str(message)
            async with asyncio.timeout(10):
                while agent.connects < 2 or agent.state.value != "online":
                    await asyncio.sleep(0.02)
            assert agent.last_error  # the bad message was seen and logged
    finally:
        await rig.server.stop()


async def test_deep_nesting_over_the_wire_is_a_400_and_counts_as_a_failed_hello(tmp_path):
    """POST /v1/join answers 400 (not 500); deep hellos count against the failed-auth limit."""
    import aiohttp

    from relay import tls
    from tests.relay.helpers import make_rig

    rig = await make_rig(tmp_path, auth_fail_limit=3)
    try:
        base = f"127.0.0.1:{rig.server.port}"
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"https://{base}/v1/join", data=DEEP, ssl=tls.fingerprint(rig.pin)
            ) as resp:
                assert resp.status == 400
                assert "malformed join request" in (await resp.json())["error"]
            codes = []
            for _ in range(4):
                async with http.ws_connect(
                    f"wss://{base}/v1/agent", ssl=tls.fingerprint(rig.pin)
                ) as ws:
                    first = protocol.loads((await ws.receive()).data, "first")
                    if first["t"] == "challenge":
                        await ws.send_str(DEEP)
                        first = protocol.loads((await ws.receive()).data, "reply")
                    codes.append(first["code"])
        assert codes == ["protocol", "protocol", "protocol", "rate"]
    finally:
        await rig.server.stop()
