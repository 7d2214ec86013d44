"""The relay's memory with N idle agents connected (issue 4 goal: < 400 MiB with 2,000).

The relay runs as its own process (`mssp-relay serve`, as deployed, with its TLS buffer tuning);
N agents (relay.agent.Agent, the real link state machine with TLS, signed challenge and
heartbeats) run in this process, each enrolled in the registry beforehand. RSS is read from
/proc once every agent is online and the links have settled.

    .venv/bin/python bench/relay/memory.py [--agents 2000]
"""

# Set-up before any measurement starts runs blocking tools (sshd, the relay CLI) on purpose.
# ruff: noqa: ASYNC220, ASYNC221

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import asyncssh

from relay import protocol
from relay.agent import Agent, AgentConfig, AgentState
from relay.allowlist import Allowlist
from relay.client import RelayClient
from relay.registry import Registry, SiteRecord

BIN = Path(sys.executable).parent


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def main(n: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="mssp-bench-relay-mem-"))
    cli = [str(BIN / "mssp-relay"), "--dir", str(tmp / "relay")]
    init = subprocess.run([*cli, "init", "--name", "127.0.0.1", "--json"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pin = json.loads(init.stdout)["pin"]
    core_key = asyncssh.generate_private_key("ssh-ed25519")
    keys = [asyncssh.generate_private_key("ssh-ed25519") for _ in range(n)]
    registry = Registry(tmp / "relay" / "registry.json")
    registry.add_core(core_key.export_public_key().decode())
    for i, key in enumerate(keys):
        site = f"s{i:05d}"
        registry.data.sites[site] = SiteRecord(site, agent_key=protocol.normalise_key(key))
    registry.save()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    relay = subprocess.Popen([*cli, "serve", "--host", "127.0.0.1", "--port", str(port)],
                             stderr=subprocess.DEVNULL)  # fmt: skip
    agents: list[Agent] = []
    tasks: list[asyncio.Task] = []
    try:
        await asyncio.sleep(1.5)
        idle = rss_mib(relay.pid)
        url = f"wss://127.0.0.1:{port}"
        core = protocol.normalise_key(core_key)
        allow = Allowlist.parse(["10.0.0.0/8"])
        agents = [
            Agent(AgentConfig(url, pin, f"s{i:05d}", core, allow, 0.0), key)
            for i, key in enumerate(keys)
        ]
        started = time.monotonic()
        for agent in agents:
            tasks.append(asyncio.create_task(agent.run()))
            await asyncio.sleep(0.002)  # a fleet does not start in the same millisecond
        while sum(a.state is AgentState.ONLINE for a in agents) < n:
            if time.monotonic() - started > 300:
                break
            await asyncio.sleep(1)
        online_after = time.monotonic() - started
        await asyncio.sleep(5)  # let buffers settle
        async with RelayClient(url, pin, core_key) as rc:
            seen = sum(p.online for p in await rc.presence())
        return {
            "agents": n,
            "online": sum(a.state is AgentState.ONLINE for a in agents),
            "relay_sees_online": seen,
            "all_online_after_s": round(online_after, 1),
            "relay_rss_idle_mib": round(idle, 1),
            "relay_rss_with_agents_mib": round(rss_mib(relay.pid), 1),
        }
    finally:
        relay.send_signal(signal.SIGTERM)
        try:
            relay.wait(30)
        except subprocess.TimeoutExpired:
            relay.kill()
        await asyncio.gather(*(a.stop(0) for a in agents), return_exceptions=True)
        await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=2000)
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    print(json.dumps(asyncio.run(main(parser.parse_args().agents)), indent=1))
