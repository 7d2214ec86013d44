"""In-process relay test rig: a TLS relay on 127.0.0.1, enrolled agents, and target servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from relay import tls
from relay import token as join_token
from relay.agent import Agent, AgentConfig, Backoff, join, load_host_key
from relay.allowlist import Allowlist
from relay.client import RelayClient
from relay.registry import Registry
from relay.server import Observer, RelayConfig, RelayServer


@dataclass
class Recorder:
    """Everything the relay received and sent, in order (the blindness record)."""

    frames: list[tuple[str, str, bytes]] = field(default_factory=list)

    def __call__(self, channel: str, direction: str, data: bytes) -> None:
        self.frames.append((channel, direction, bytes(data)))

    def blob(self) -> bytes:
        return b"".join(data for _, _, data in self.frames)


@dataclass
class Rig:
    tmp: Path
    core_key: asyncssh.SSHKey
    config: RelayConfig
    server: RelayServer

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.server.port}"

    @property
    def pin(self) -> str:
        return self.server.pin

    def client(self) -> RelayClient:
        return RelayClient(self.url, self.pin, self.core_key)

    async def restart(self, *, observer: Observer | None = None) -> None:
        """Start a new relay process on the same port and registry (after kill/stop)."""
        from dataclasses import replace

        self.config = replace(self.config, port=self.server.port)
        self.server = RelayServer(self.config, observer=observer)
        await self.server.start()

    def issue(self, site: str, *, ttl: int = 1800, now: float | None = None):
        return join_token.issue(self.url, self.pin, site, self.core_public, ttl=ttl, now=now)

    @property
    def core_public(self) -> str:
        return self.core_key.export_public_key().decode().strip()


async def make_rig(
    tmp: Path, *, observer: Observer | None = None, prepare=None, **overrides
) -> Rig:
    files = tls.generate(tmp / "relay.crt", tmp / "relay.key", ["127.0.0.1"])
    core_key = asyncssh.generate_private_key("ssh-ed25519")
    registry = Registry(tmp / "registry.json")
    registry.add_core(core_key.export_public_key().decode())
    if prepare is not None:
        prepare(registry)
    config = RelayConfig(
        cert_path=files.cert_path,
        key_path=files.key_path,
        registry_path=tmp / "registry.json",
        port=0,
        **overrides,
    )
    server = RelayServer(config, observer=observer)
    await server.start()
    return Rig(tmp, core_key, config, server)


@dataclass
class Enrolled:
    site: str
    state_dir: Path
    binding_secret: bytes
    host_key_public: str

    def agent(self, **kwargs) -> Agent:
        kwargs.setdefault("backoff", Backoff(base=0.2, cap=2.0))
        return Agent(AgentConfig.load(self.state_dir), load_host_key(self.state_dir), **kwargs)


async def enrol(
    rig: Rig,
    site: str,
    *,
    networks=("127.0.0.1/32",),
    ports=None,
    client: RelayClient | None = None,
) -> Enrolled:
    issued = rig.issue(site)
    if client is None:
        async with rig.client() as rc:
            await rc.register_token(issued)
    else:
        await client.register_token(issued)
    state_dir = rig.tmp / "agents" / site.replace("/", "_")
    result = await join(issued.token, state_dir, Allowlist.parse(networks, ports))
    return Enrolled(site, state_dir, issued.binding_secret, result.host_key)


@contextlib.asynccontextmanager
async def running(agent: Agent, *, online_timeout: float = 10.0) -> AsyncIterator[Agent]:
    """Run an agent in the background until the block ends (then drain and stop it)."""
    task = asyncio.create_task(agent.run())
    try:
        async with asyncio.timeout(online_timeout):
            while agent.state.value != "online":
                if task.done():
                    task.result()
                    raise AssertionError(f"agent stopped: {agent.last_error}")
                await asyncio.sleep(0.01)
        yield agent
    finally:
        await agent.stop(drain_timeout=1)
        await asyncio.wait_for(task, 10)


class _ExecServer(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return key.public_data == self.client_key.public_data


async def _run_command(process: asyncssh.SSHServerProcess) -> None:
    """Really execute the command (bash -c; a shell is bash reading stdin), bytes piped through."""
    proc = await asyncio.create_subprocess_exec(
        *(["bash", "-c", process.command] if process.command else ["bash", "-s"]),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )

    async def feed() -> None:
        with contextlib.suppress(asyncssh.Error, ConnectionError):
            while data := await process.stdin.read(65536):
                proc.stdin.write(data)
                await proc.stdin.drain()
        with contextlib.suppress(ConnectionError):
            proc.stdin.close()

    async def copy(src, dst) -> None:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()

    feeder = asyncio.create_task(feed())
    await asyncio.gather(copy(proc.stdout, process.stdout), copy(proc.stderr, process.stderr))
    status = await proc.wait()
    feeder.cancel()
    process.exit(status)


@dataclass
class Target:
    """An in-process SSH server on 127.0.0.1 that really runs commands and serves SFTP."""

    port: int
    host_key: asyncssh.SSHKey
    client_key: asyncssh.SSHKey
    server: asyncssh.SSHAcceptor

    def known_hosts(self):
        return ([self.host_key.convert_to_public()], [], [])


@contextlib.asynccontextmanager
async def target_server(root: Path) -> AsyncIterator[Target]:
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")

    class Server(_ExecServer):
        pass

    Server.client_key = client_key
    root.mkdir(parents=True, exist_ok=True)
    server = await asyncssh.listen(
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        server_factory=Server,
        process_factory=_run_command,
        sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(root)),
        allow_scp=False,
        encoding=None,
    )
    try:
        yield Target(server.sockets[0].getsockname()[1], host_key, client_key, server)
    finally:
        server.close()
        await server.wait_closed()


async def connect_through(rc: RelayClient, enrolled: Enrolled, core_key: asyncssh.SSHKey):
    """Verify the agent key with the binding secret, then open the SSH connection to the agent."""
    from relay.client import connect_agent

    key = await rc.verified_agent_key(enrolled.site, enrolled.binding_secret)
    tunnel = await rc.open_site(enrolled.site)
    return await connect_agent(tunnel, key, core_key)


async def connect_target(agent_conn, target: Target, host: str = "127.0.0.1"):
    from relay.client import AgentTunnel

    return await asyncssh.connect(
        host,
        target.port,
        tunnel=AgentTunnel(agent_conn),
        known_hosts=target.known_hosts(),
        client_keys=[target.client_key],
        username="tester",
        config=None,
    )
