"""`mssp rdp`: forward the host's RDP port and start the local RDP client, or say how to connect."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from dataclasses import dataclass

from mssp.connections import ConnectionManager
from mssp.inventory import HostRecord
from mssp.sessions.forward import PortForward, stop_signals

RDP_CLIENTS = ("xfreerdp3", "xfreerdp", "wlfreerdp", "mstsc.exe", "mstsc")
"""Looked up on PATH in this order (FreeRDP on Linux, mstsc on Windows/WSL)."""


@dataclass(frozen=True)
class RdpResult:
    """How an RDP session through a forward ended."""

    client: str | None
    """The client started, or None when instructions were printed instead."""
    exit_status: int | None
    local_address: str


def find_client(preferred: str | None = None) -> str | None:
    """The path of an installed RDP client (``preferred`` first if given)."""
    for name in ((preferred,) if preferred else ()) + RDP_CLIENTS:
        found = shutil.which(name)
        if found:
            return found
    return None


def client_argv(client: str, address: str, port: int, username: str) -> list[str]:
    """The command line for ``client`` connecting to address:port (no password on it, ever)."""
    name = client.rsplit("/", 1)[-1].lower()
    if name.startswith("mstsc"):
        return [client, f"/v:{address}:{port}"]
    argv = [client, f"/v:{address}:{port}"]
    if username:
        argv.append(f"/u:{username}")
    return argv


def instructions(address: str, port: int, username: str) -> str:
    who = f" as {username}" if username else ""
    return (
        f"No RDP client found (looked for {', '.join(RDP_CLIENTS)}).\n"
        f"Connect your RDP client to {address}:{port}{who}, for example:\n"
        f"  xfreerdp /v:{address}:{port}" + (f" /u:{username}" if username else "") + "\n"
        f"  mstsc /v:{address}:{port}\n"
        "The forward stays open until you press Ctrl-C."
    )


async def run_client(argv: list[str]) -> int:
    """Start the RDP client and wait for it to end (the forward closes after it)."""
    proc = await asyncio.create_subprocess_exec(*argv)
    try:
        return await proc.wait()
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)


async def rdp_session(
    manager: ConnectionManager,
    host: HostRecord,
    *,
    port: int = 3389,
    client: str | None,
    local_port: int = 0,
    bind: str = "127.0.0.1",
    target_host: str | None = None,
    notice: Callable[[str], None],
    show: Callable[[str], None],
) -> int:
    """Forward ``port``; run ``client`` against it (the forward closes when it exits), or show
    how to connect and keep the forward until Ctrl-C. Returns the client's exit status."""
    async with PortForward(
        manager,
        host,
        port,
        local_port=local_port,
        bind=bind,
        target_host=target_host,
        notice=notice,
    ) as fwd:
        address, lport = fwd.local_address
        if client is None:
            with stop_signals() as stop:
                show(instructions(address, lport, host.username))
                await stop.wait()
            return 0
        argv = client_argv(client, address, lport, host.username)
        notice(
            f"forwarding {address}:{lport} -> {host.full_name}:{port}; starting {' '.join(argv)}"
        )
        return await run_client(argv)
