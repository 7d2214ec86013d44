"""Relay promises: blind, impersonation detected, strict tokens, strangers cut, revocation."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import secrets
import ssl
import time

import aiohttp
import asyncssh
import pytest

from relay import protocol, tls
from relay.agent import AgentConfig, AgentState, join
from relay.allowlist import Allowlist
from relay.errors import ImpersonationError, RelayAuthError, TokenError
from tests.relay.helpers import (
    connect_target,
    connect_through,
    enrol,
    running,
    target_server,
)


def encodings_of(canary: bytes) -> dict[str, bytes]:
    """The canary as it could appear: raw, base64 (3 alignments, both alphabets), hex, UTF-16."""
    forms = {"raw": canary, "hex": canary.hex().encode(), "HEX": canary.hex().upper().encode()}
    for i in range(3):
        for name, enc in (("b64", base64.b64encode), ("b64url", base64.urlsafe_b64encode)):
            forms[f"{name}{i}"] = enc(b"\0" * i + canary)[4:-4]
    forms["utf16le"] = canary.decode().encode("utf-16-le")
    forms["utf16be"] = canary.decode().encode("utf-16-be")
    return forms


async def test_relay_learns_nothing(rig, recorder, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    canary = ("CANARY" + secrets.token_hex(16)).encode()
    async with target_server(tmp_path / "root") as target:
        site = await enrol(rig, "acme/hq", ports=[target.port])
        async with running(site.agent()), rig.client() as rc:
            agent = await connect_through(rc, site, rig.core_key)
            host = await connect_target(agent, target)
            # on a command line, and back in the output
            assert (await host.run(f"echo {canary.decode()}")).stdout.strip() == canary.decode()
            # through stdin
            assert (await host.run("cat", input=canary.decode())).stdout == canary.decode()
            # typed in a shell
            shell = await host.create_process()
            shell.stdin.write(f"echo typed-{canary.decode()}\n")
            line = await asyncio.wait_for(shell.stdout.readline(), 5)
            assert line.strip() == f"typed-{canary.decode()}"
            shell.stdin.write("exit\n")
            await shell.wait()
            # in a file moved both ways
            local = tmp_path / "secret.txt"
            local.write_bytes(canary * 1000)
            async with host.start_sftp_client() as sftp:
                await sftp.put(str(local), "up.txt")
                await sftp.get("up.txt", str(tmp_path / "down.txt"))
            assert (tmp_path / "down.txt").read_bytes() == canary * 1000
            host.close()
            agent.close()
    record = recorder.blob()
    # The recorder really saw the sessions (more than the file's size) and readable routing data.
    assert len(record) > len(canary) * 1000
    assert b"acme/hq" in record
    haystacks = {
        "relay record": record,
        "relay registry": rig.config.registry_path.read_bytes(),
        "relay logs": "\n".join(
            r.getMessage() for r in caplog.records if r.name.startswith("relay")
        ).encode(),
    }
    hits = [
        (where, form)
        for where, data in haystacks.items()
        for form, needle in encodings_of(canary).items()
        if needle in data
    ]
    assert hits == []


async def test_relay_swapping_the_agent_key_is_detected(rig):
    site = await enrol(rig, "acme/hq")
    registry = rig.server.registry
    rec = registry.site("acme/hq")
    evil = protocol.normalise_key(asyncssh.generate_private_key("ssh-ed25519"))
    registry.data.sites["acme/hq"] = dataclasses.replace(rec, agent_key=evil)
    async with rig.client() as rc:
        with pytest.raises(ImpersonationError, match="impersonation"):
            await rc.verified_agent_key("acme/hq", site.binding_secret)


async def test_relay_substituting_its_own_agent_is_stopped_before_any_command(rig, tmp_path):
    site = await enrol(rig, "acme/hq")
    async with rig.client() as rc:
        pinned = await rc.verified_agent_key("acme/hq", site.binding_secret)
    # The relay operator enrols an agent of its own under the site (new key, no valid proof).
    evil_key = asyncssh.generate_private_key("ssh-ed25519")
    registry = rig.server.registry
    registry.data.sites["acme/hq"] = dataclasses.replace(
        registry.site("acme/hq"), agent_key=protocol.normalise_key(evil_key)
    )
    from relay.agent import Agent

    evil = Agent(AgentConfig.load(site.state_dir), evil_key)
    from relay.client import connect_agent

    async with running(evil), rig.client() as rc:
        tunnel = await rc.open_site("acme/hq")
        with pytest.raises(asyncssh.HostKeyNotVerifiable):
            await connect_agent(tunnel, pinned, rig.core_key)
        # and asking the relay again shows the forgery
        with pytest.raises(ImpersonationError):
            await rc.verified_agent_key("acme/hq", site.binding_secret)


async def _post_join(rig, body: bytes) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"https://127.0.0.1:{rig.server.port}/v1/join",
            data=body,
            ssl=tls.fingerprint(rig.pin),
        ) as resp:
            return resp.status, await resp.text()


async def test_token_reuse_expiry_wrong_site_and_revoked_are_refused(rig):
    allow = Allowlist.parse(["127.0.0.1/32"])
    async with rig.client() as rc:
        # reuse
        issued = rig.issue("acme/hq")
        await rc.register_token(issued)
        await join(issued.token, rig.tmp / "a1", allow)
        with pytest.raises(TokenError, match="already used"):
            await join(issued.token, rig.tmp / "a2", allow)
        # expiry at the relay (the token text itself still looks valid to the agent)
        issued = rig.issue("acme/branch")
        await rc.register_site("acme/branch", issued.admission_hash, time.time() - 1)
        with pytest.raises(TokenError, match="expired"):
            await join(issued.token, rig.tmp / "b1", allow)
        # wrong site: a token for acme/hq presented for acme/other (registered separately)
        issued_hq = rig.issue("acme/hq")
        await rc.register_token(issued_hq)
        await rc.register_token(rig.issue("acme/other"))
        from relay import token as join_token

        parsed = join_token.parse(issued_hq.token)
        key = protocol.normalise_key(asyncssh.generate_private_key("ssh-ed25519"))
        body = {
            "site": "acme/other",
            "admission": protocol.b64u(parsed.admission_secret),
            "agent_key": key,
            "proof": join_token.key_proof(parsed.binding_secret, "acme/other", key),
        }
        status, text = await _post_join(rig, json.dumps(body).encode())
        assert status == 403 and "another site" in text
        # revoked
        issued = rig.issue("acme/gone")
        await rc.register_token(issued)
        await rc.revoke_site("acme/gone")
        with pytest.raises(TokenError, match="refused"):
            await join(issued.token, rig.tmp / "c1", allow)
    assert not (rig.tmp / "a2" / "agent.json").exists()


async def test_garbage_joins_are_refused_then_rate_limited(rig):
    garbage = [b"", b"{", b"null", b'{"site":"../x"}', secrets.token_bytes(300), b"A" * 9000]
    statuses = []
    for i in range(rig.config.join_limit + 3):
        status, text = await _post_join(rig, garbage[i % len(garbage)])
        statuses.append(status)
        assert "Traceback" not in text
        json.loads(text)["error"]  # a clear JSON error every time
    assert set(statuses[: rig.config.join_limit]) <= {400, 413}
    assert statuses[rig.config.join_limit :] == [429, 429, 429]


async def test_unauthenticated_peer_is_closed_within_10_s(rig):
    assert rig.config.auth_timeout < 10
    port = rig.server.port
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    async def closed_after(reader) -> float:
        start = time.monotonic()
        while await asyncio.wait_for(reader.read(4096), 12):
            pass
        return time.monotonic() - start

    async def silent(**kw) -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, **kw)
        try:
            return await closed_after(reader)
        finally:
            writer.close()

    async def websocket_without_hello() -> tuple[float, str]:
        start = time.monotonic()
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(
                f"wss://127.0.0.1:{port}/v1/agent", ssl=tls.fingerprint(rig.pin)
            ) as ws:
                first = await ws.receive()
                assert '"challenge"' in first.data
                while (await asyncio.wait_for(ws.receive(), 12)).type not in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.ERROR,
                ):
                    pass
        return time.monotonic() - start

    async def bad_signature() -> str:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(
                f"wss://127.0.0.1:{port}/v1/core", ssl=tls.fingerprint(rig.pin)
            ) as ws:
                await ws.receive()
                stranger = asyncssh.generate_private_key("ssh-ed25519")
                await ws.send_str(
                    protocol.encode(
                        {
                            "t": "hello",
                            "key": protocol.normalise_key(stranger),
                            "sig": protocol.sign(stranger, b"whatever"),
                        }
                    )
                )
                reply = await ws.receive()
                closing = await ws.receive()
                assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                return reply.data

    results = await asyncio.gather(
        silent(), silent(ssl=ctx), websocket_without_hello(), bad_signature()
    )
    for elapsed in results[:3]:
        assert elapsed < 10
    assert json.loads(results[3]) == {
        "t": "error",
        "code": "auth",
        "reason": "authentication failed",
    }


async def test_stranger_core_key_gets_nothing(rig):
    from relay.client import RelayClient

    with pytest.raises(RelayAuthError, match="authentication failed"):
        async with RelayClient(rig.url, rig.pin, asyncssh.generate_private_key("ssh-ed25519")):
            pass


async def test_wrong_relay_certificate_is_refused(rig):
    from relay.client import RelayClient

    with pytest.raises(RelayAuthError, match="does not match the pinned"):
        async with RelayClient(rig.url, "sha256:" + "00" * 32, rig.core_key):
            pass


async def test_revoke_cuts_a_live_agent_within_seconds(rig, tmp_path):
    async with target_server(tmp_path / "root") as target:
        site = await enrol(rig, "acme/hq", ports=[target.port])
        agent = site.agent()
        run = asyncio.create_task(agent.run())
        async with rig.client() as rc:
            while agent.state is not AgentState.ONLINE:
                await asyncio.sleep(0.01)
            conn = await connect_through(rc, site, rig.core_key)
            host = await connect_target(conn, target)
            start = time.monotonic()
            await rc.revoke_site("acme/hq")
            assert await asyncio.wait_for(run, 5) is AgentState.REVOKED
            await asyncio.wait_for(host.wait_closed(), 5)
            await asyncio.wait_for(conn.wait_closed(), 5)
            assert time.monotonic() - start < 5
            # refused afterwards, and it does not retry
            again = site.agent()
            assert await asyncio.wait_for(again.run(), 5) is AgentState.REVOKED
            assert "revoked" in again.last_error
            assert {p.site_id: p for p in await rc.presence()}["acme/hq"].online is False


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/"),
        ("GET", "/v1/agent/"),
        ("GET", "//v1/agent"),
        ("GET", "/v1//agent"),
        ("GET", "/v1/x/../agent"),
        ("GET", "/v1/./agent"),
        ("GET", "/v1/%61gent"),
        ("GET", "/v1/%2e%2e/v1/agent"),
        ("GET", "/%2e%2e/healthz"),
        ("GET", "/V1/AGENT"),
        ("GET", "/v1/agent?site=x"),
        ("GET", "/healthz/"),
        ("GET", "/healthz;x"),
        ("HEAD", "/healthz"),
        ("POST", "/healthz"),
        ("GET", "/v1/join"),
        ("POST", "/v1/join/"),
        ("PUT", "/v1/join"),
        ("OPTIONS", "*"),
        ("GET", "/static/../../etc/passwd"),
    ],
)
async def test_path_variants_are_refused(rig, method, target):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    async def request(method: str, target: str) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", rig.server.port, ssl=ctx)
        writer.write(
            f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
        )
        status = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        return status

    assert (await request("GET", "/healthz")).startswith(b"HTTP/1.1 101") is False
    status = await request(method, target)
    assert status.split()[1] in (b"400", b"404"), status


async def test_health_answers_ok_and_nothing_else(rig):
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"https://127.0.0.1:{rig.server.port}/healthz", ssl=tls.fingerprint(rig.pin)
        ) as resp:
            assert resp.status == 200 and await resp.text() == "ok"
