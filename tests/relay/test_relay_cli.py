"""The console scripts as a user runs them, and relay/'s independence from the rest of mssp."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

import asyncssh

from relay import token as join_token
from relay.client import RelayClient

PY = sys.executable


def test_relay_package_imports_nothing_of_mssp():
    code = (
        "import sys, pkgutil, importlib, relay\n"
        "for m in pkgutil.iter_modules(relay.__path__):\n"
        "    importlib.import_module('relay.' + m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in "
        "{'mssp', 'tui', 'click', 'tortoise', 'textual', 'yaml', 'winrm'})\n"
        "print(bad)\n"
    )
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_relay_and_agent_console_scripts_end_to_end(tmp_path):
    relay_dir, agent_dir = tmp_path / "relay", tmp_path / "agent"
    cli = [PY, "-m", "relay.server_cli", "--dir", str(relay_dir)]
    init = subprocess.run(
        [*cli, "init", "--name", "127.0.0.1", "--json"], capture_output=True, text=True, check=True
    )
    pin = json.loads(init.stdout)["pin"]
    core_key = asyncssh.generate_private_key("ssh-ed25519")
    subprocess.run([*cli, "core", "add", core_key.export_public_key().decode()], check=True)
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [*cli, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    agent = None
    try:
        await _wait_port(port)
        # while it runs, the host CLI refuses to edit the registry behind its back
        busy = subprocess.run([*cli, "site", "revoke", "acme/hq"], capture_output=True, text=True)
        assert busy.returncode == 2 and "running relay" in busy.stderr
        url = f"wss://127.0.0.1:{port}"
        async with RelayClient(url, pin, core_key) as rc:
            issued = join_token.issue(url, pin, "acme/hq", core_key.export_public_key().decode())
            await rc.register_token(issued)
            joined = subprocess.run(
                [
                    PY,
                    "-m",
                    "relay.agent_cli",
                    "--state-dir",
                    str(agent_dir),
                    "join",
                    "-",
                    "--network",
                    "127.0.0.1/32",
                    "--json",
                ],
                input=issued.token + "\n",
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert joined.returncode == 0, joined.stderr
            host_key = json.loads(joined.stdout)["host_key"]
            assert await rc.verified_agent_key("acme/hq", issued.binding_secret) == host_key
            agent = subprocess.Popen(
                [PY, "-m", "relay.agent_cli", "--state-dir", str(agent_dir), "run"],
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(150):
                if any(p.online for p in await rc.presence()):
                    break
                await asyncio.sleep(0.1)
            assert [p.site_id for p in await rc.presence() if p.online] == ["acme/hq"]
            agent.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(agent.wait, 15) == 0
            assert "draining" in agent.stderr.read()
            agent.stderr.close()
    finally:
        for proc in (agent, server):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.wait, 15) == 0
    assert issued.token not in server.stderr.read()
    server.stderr.close()
