"""A stranger cannot tell a revoked site from an unknown one (no client enumeration)."""

import aiohttp
import asyncssh

from relay import protocol, tls
from tests.relay.helpers import Recorder, enrol, make_rig


async def test_a_stranger_gets_the_same_refusal_for_revoked_and_unknown_sites(tmp_path):
    rig = await make_rig(tmp_path, observer=Recorder())
    try:
        await enrol(rig, "acme/hq")
        async with rig.client() as rc:
            await rc.revoke_site("acme/hq")
        stranger = asyncssh.generate_private_key("ssh-ed25519")
        replies = {}
        async with aiohttp.ClientSession() as http:
            for site in ("acme/hq", "acme/nosuch"):
                async with http.ws_connect(
                    f"wss://127.0.0.1:{rig.server.port}/v1/agent", ssl=tls.fingerprint(rig.pin)
                ) as ws:
                    await ws.receive()
                    hello = {"t": "hello", "site": site, "sig": protocol.sign(stranger, b"x")}
                    await ws.send_str(protocol.encode(hello))
                    replies[site] = (await ws.receive()).data
        assert replies["acme/hq"] == replies["acme/nosuch"], replies
    finally:
        await rig.server.stop()
