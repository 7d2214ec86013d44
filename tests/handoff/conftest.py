"""Hand-off tests: a real `mssp daemon` process, real `mssp exec` processes, the in-process SSH
server of the engine tests standing in for the fleet."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mssp.handoff import socket_path
from tests.engine.conftest import ssh_server  # noqa: F401  (fixture)
from tests.engine.test_cli_runs import PASSPHRASE, fleet  # noqa: F401  (fixture)


def env_for(settings, *, passphrase: bool) -> dict[str, str]:
    env = {
        **os.environ,
        "MSSP_HOME": str(settings.config_dir),
        "MSSP_DATABASE_URL": settings.database_url,
    }
    env.pop("MSSP_VAULT_PASSPHRASE", None)
    if passphrase:
        env["MSSP_VAULT_PASSPHRASE"] = PASSPHRASE
    return env


@dataclass
class Daemon:
    proc: asyncio.subprocess.Process
    socket: Path
    settings: object


@pytest.fixture
async def daemon(fleet) -> AsyncIterator[Daemon]:  # noqa: F811
    """`mssp daemon` on the fleet's home, listening for hand-offs."""
    path = socket_path(fleet)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from mssp.cli import main; main()",
        "-v",
        "daemon",
        "--poll",
        "1",
        env=env_for(fleet, passphrase=True),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    for _ in range(300):
        if path.exists() or proc.returncode is not None:
            break
        await asyncio.sleep(0.05)
    if not path.exists():
        proc.kill()
        err = await proc.stderr.read() if proc.stderr else b""
        pytest.fail(f"the daemon did not listen on {path}: {err.decode()}")
    try:
        yield Daemon(proc, path, fleet)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 20)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if proc.stderr is not None:  # shown by pytest when the test failed
            print("daemon log:\n" + (await proc.stderr.read()).decode(errors="replace"))


async def client(
    settings, *args: str, passphrase: bool = False, timeout: float = 60
) -> tuple[int, str, str]:
    """`mssp ARGS` as a user runs it: without the vault passphrase unless asked."""
    proc = await client_process(settings, *args, passphrase=passphrase)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


async def client_process(
    settings, *args: str, passphrase: bool = False
) -> asyncio.subprocess.Process:
    """A running `mssp ARGS`, output piped."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from mssp.cli import main; main()",
        *args,
        env=env_for(settings, passphrase=passphrase),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
