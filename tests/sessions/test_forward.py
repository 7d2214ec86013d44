"""`mssp forward`: HTTP through a forwarded port over a real SSH connection; refusals reported with
their reason (not a bare EOF); the forward closes with the command and is audited."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from mssp import audit
from mssp.config import Settings
from mssp.errors import UsageError
from mssp.sessions.forward import PortForward
from tests.sessions.conftest import HOST, Home
from tests.sessions.helpers import manager_for, seed
from tests.sshserver import ssh_test_server

BIG = os.urandom(3 * 1024 * 1024)


@pytest.fixture
async def web_server() -> AsyncIterator[int]:
    """An aiohttp web server on loopback: /hello, /big (3 MiB), /echo (POST)."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello through the forward")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=BIG)

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.add_routes([web.get("/hello", hello), web.get("/big", big), web.post("/echo", echo)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield port
    finally:
        await runner.cleanup()


async def test_forward_carries_http_and_is_audited(db: Settings, web_server: int) -> None:
    notices: list[str] = []
    async with ssh_test_server() as srv:
        srv.allow_forwarding = True
        vault, (host,) = await seed(db, [srv])
        async with manager_for(db, vault) as manager:
            async with PortForward(manager, host, web_server, notice=notices.append) as fwd:
                address, port = fwd.local_address
                assert address == "127.0.0.1" and port > 0
                url = f"http://{address}:{port}"
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"{url}/hello") as reply:
                        assert reply.status == 200
                        assert await reply.text() == "hello through the forward"
                    async with http.get(f"{url}/big") as reply:
                        assert await reply.read() == BIG
                    async with http.post(f"{url}/echo", data=BIG[:1_000_000]) as reply:
                        assert await reply.read() == BIG[:1_000_000]
                stats = fwd.stats
            # closed with the block: nothing listens any more
            with pytest.raises(OSError):
                await asyncio.open_connection(address, port)
    assert ("127.0.0.1", web_server) in srv.forwards  # the channel went to the host's loopback
    assert stats.connections >= 1 and stats.refused == 0
    assert stats.bytes_in > len(BIG) and stats.bytes_out > 1_000_000
    assert notices == []
    entries = await audit.entries(action="forward")
    assert [e.result for e in entries] == ["intent", "ok"]
    detail = entries[1].as_dict()["detail"]
    assert detail["target"] == f"127.0.0.1:{web_server}" and detail["bytes_in"] == stats.bytes_in


async def _request_through(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /hello HTTP/1.0\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


async def test_refused_channel_is_reported_with_its_reason(db: Settings, web_server: int) -> None:
    notices: list[str] = []
    async with ssh_test_server() as srv:
        srv.allow_forwarding = False  # the far side refuses every direct-tcpip channel
        vault, (host,) = await seed(db, [srv])
        async with manager_for(db, vault) as manager:
            async with PortForward(manager, host, web_server, notice=notices.append) as fwd:
                assert await _request_through(fwd.local_address[1]) == b""  # the client: EOF
                assert fwd.stats.refused == 1
    assert len(notices) == 1
    assert "refused" in notices[0] and f"127.0.0.1:{web_server}" in notices[0]
    assert "code" in notices[0]  # the SSH reason code and text reach the user


async def test_nothing_listening_at_the_target_is_reported(db: Settings) -> None:
    notices: list[str] = []
    sock = __import__("socket").socket()
    sock.bind(("127.0.0.1", 0))
    dead_port = sock.getsockname()[1]
    sock.close()
    async with ssh_test_server() as srv:
        srv.allow_forwarding = True
        vault, (host,) = await seed(db, [srv])
        async with manager_for(db, vault) as manager:
            async with PortForward(manager, host, dead_port, notice=notices.append) as fwd:
                assert await _request_through(fwd.local_address[1]) == b""
    assert len(notices) == 1 and f"127.0.0.1:{dead_port}" in notices[0]


async def test_direct_windows_host_forwards_to_its_address(db: Settings, web_server: int) -> None:
    from mssp.store.inventory import create_client, create_host, create_site

    await create_client("acme", "Acme")
    await create_site("acme", "hq", "HQ")
    host = await create_host(
        "acme", "hq", "win1", address="127.0.0.1", port=5986, transport="winrm", via="direct"
    )
    async with ssh_test_server() as srv:
        vault, _ = await seed(db.replace(), [], client="globex")  # a vault, no SSH host needed
        async with manager_for(db, vault) as manager:
            async with PortForward(manager, host, web_server) as fwd:
                assert fwd.path == "direct"
                data = await _request_through(fwd.local_address[1])
    assert data.startswith(b"HTTP/1.") and data.endswith(b"hello through the forward")
    assert srv.handshakes == 0


async def test_bad_bind_address_is_a_usage_error(db: Settings) -> None:
    from mssp.inventory import HostRecord

    host = HostRecord("acme", "hq", "srv1", "127.0.0.1")
    with pytest.raises(UsageError):
        PortForward(None, host, 80, bind="not-an-address")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        PortForward(None, host, 0)  # type: ignore[arg-type]


# ---- the command, as a user runs it ----------------------------------------------------------
@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[int]:
    """`python3 -m http.server` on loopback: the web UI on the host's side."""
    (tmp_path / "index.html").write_text("served by http.server on the host\n")
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        yield int(re.search(r"port (\d+)", line).group(1))  # type: ignore[union-attr]
    finally:
        proc.terminate()
        proc.wait(10)


def test_mssp_forward_command_carries_http_until_stopped(home: Home, http_server: int) -> None:
    home.server.allow_forwarding = True
    proc = subprocess.Popen(
        [*home.mssp, "forward", HOST, str(http_server), "--json"],
        env=home.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        while not lines or lines[-1].strip() != "}":
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            lines.append(line)
        info = json.loads("".join(lines))
        host, port = info["local"].rsplit(":", 1)
        assert info["target"] == f"127.0.0.1:{http_server}" and info["path"] == "ssh"
        import urllib.request

        with urllib.request.urlopen(f"http://{host}:{port}/index.html", timeout=10) as reply:
            assert reply.read() == b"served by http.server on the host\n"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "forward closed: 1 connection(s), 0 refused" in err
    # closed with the command
    with pytest.raises(OSError):
        __import__("socket").create_connection((host, int(port)), timeout=2)
    audited = home.invoke("audit", "list", "--action", "forward", "--json")
    entries = json.loads(audited.output)
    assert [e["result"] for e in entries][-2:] == ["intent", "ok"]
    assert entries[-1]["detail"]["connections"] == 1


# ---- relayed sites: through the site's agent (the websocket hop is the relay's own test) ----
class _AgentPath:
    """A PathProvider whose tunnel is an SSH connection to a stand-in site agent: an in-process
    SSH server that allows direct-tcpip only, as mssp-agent does (FIELD-NOTES §1)."""

    def __init__(self, agent) -> None:
        self.agent = agent
        self.conn = None
        self.asked: list[str] = []

    async def tunnel_for(self, host):
        import asyncssh

        self.asked.append(host.full_name)
        if self.conn is None:
            self.conn = await asyncssh.connect(
                "127.0.0.1",
                self.agent.port,
                username=self.agent.username,
                client_keys=[asyncssh.import_private_key(self.agent.client_key)],
                known_hosts=([asyncssh.import_public_key(self.agent.host_key_public)], [], []),
                agent_path=None,
                config=None,
            )
        return self.conn

    async def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            await self.conn.wait_closed()


async def test_forward_to_relayed_hosts_goes_through_the_agent(
    db: Settings, web_server: int
) -> None:
    from mssp.sessions.hosts import session_connections
    from mssp.store.inventory import create_host

    async with ssh_test_server() as agent, ssh_test_server() as target:
        agent.allow_forwarding = True
        target.allow_forwarding = True
        vault, _ = await seed(db, [target])
        # the same SSH server, now reached through the agent: the host's connection is nested
        linux = await create_host(
            "acme",
            "hq",
            "relayed-linux",
            address="127.0.0.1",
            port=target.port,
            username=target.username,
            via="relay",
            credential="key1",
        )
        windows = await create_host(
            "acme",
            "hq",
            "relayed-win",
            address="127.0.0.1",
            port=5986,
            transport="winrm",
            via="relay",
        )
        path = _AgentPath(agent)
        try:
            async with session_connections(db, vault, relay=path) as manager:
                async with PortForward(manager, linux, web_server) as fwd:
                    assert fwd.path == "ssh"
                    linux_reply = await _request_through(fwd.local_address[1])
                async with PortForward(manager, windows, web_server) as fwd:
                    assert fwd.path == "relay"
                    windows_reply = await _request_through(fwd.local_address[1])
        finally:
            await path.close()
    assert linux_reply.endswith(b"hello through the forward")
    assert windows_reply.endswith(b"hello through the forward")
    assert path.asked == ["acme/hq/relayed-linux", "acme/hq/relayed-win"]
    # the agent carried the nested SSH connection (to the host's port 22 stand-in) and the
    # Windows host's channel; the host itself opened the channel to its own loopback
    assert ("127.0.0.1", target.port) in agent.forwards
    assert ("127.0.0.1", web_server) in agent.forwards
    assert ("127.0.0.1", web_server) in target.forwards
