"""Backup test fixtures: real restic repositories in tmp dirs, reached through a real in-process
SSH server whose commands run locally (tests/sshserver.py); a task context on that connection."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from mssp.config import Settings
from mssp.connections import ConnectionManager, Credentials
from mssp.connectors.base import ConnectOptions
from mssp.connectors.ssh import SSHConnector
from mssp.engine import Engine, StaticHosts
from mssp.events import EventBus
from mssp.inventory import HostRecord
from mssp.tasks.base import Task, TaskContext, TaskResult
from mssp.vault import Secret
from tests.sshserver import SSHTestServer, ssh_test_server

PASSWORD = "repo-pw-Zq81-never-on-a-command-line"
CREDENTIAL = "acme/restic-pw"


def restic(repo: Path, *args: str, password: str = PASSWORD, check: bool = True):
    env = {**os.environ, "RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": password}
    return subprocess.run(["restic", *args], env=env, capture_output=True, text=True, check=check)


@pytest.fixture(scope="session")
def initialised_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One repository created once (restic calibrates its KDF for ~3 s): tests copy it."""
    if shutil.which("restic") is None:
        pytest.fail("restic is not installed: these tests need the real tool")
    repo = tmp_path_factory.mktemp("restic-template") / "repo"
    restic(repo, "init")
    return repo


@dataclass
class Site:
    """A 'host' (the local machine through SSH) with data to back up and a repository."""

    root: Path
    repo: Path
    data: Path
    scratch: Path
    canary: Path
    srv: SSHTestServer
    host: HostRecord

    def params(self, **extra: Any) -> dict[str, Any]:
        return {"repository": str(self.repo), "password": CREDENTIAL, **extra}


@pytest.fixture
async def site(tmp_path: Path, initialised_repo: Path) -> AsyncIterator[Site]:
    repo = tmp_path / "repo"
    shutil.copytree(initialised_repo, repo)
    data = tmp_path / "data"
    (data / "docs").mkdir(parents=True)
    (data / "docs" / "invoice-2026-11.pdf").write_bytes(os.urandom(300_000))
    (data / "docs" / "notes.txt").write_text("quarterly figures\n" * 200)
    (data / "db.sqlite").write_bytes(os.urandom(1_500_000))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    async with ssh_test_server() as srv:
        host = HostRecord(
            client="acme",
            site="hq",
            name="fs01",
            address=srv.address,
            port=srv.port,
            username=srv.username,
        )
        yield Site(tmp_path, repo, data, scratch, data / ".mssp-canary", srv, host)


def connect_options(srv: SSHTestServer) -> ConnectOptions:
    return ConnectOptions(
        host="acme/hq/fs01",
        address=srv.address,
        port=srv.port,
        username=srv.username,
        private_key=srv.client_key,
        pinned_host_keys=(srv.host_key_public,),
        connect_timeout=5.0,
    )


async def run_task(
    site: Site, task: Task, *, password: str = PASSWORD, secrets: Mapping[str, Any] | None = None
) -> TaskResult:
    """check → apply → verify as the engine does, on a real SSH connection to the site."""
    async with SSHConnector(connect_options(site.srv)) as conn:
        ctx = TaskContext(
            host=site.host,
            conn=conn,
            secrets=secrets if secrets is not None else {CREDENTIAL: Secret(password)},
        )
        plan = await task.check(ctx)
        if not plan.needed:
            return TaskResult.ok("nothing to change")
        result = await task.apply(ctx, plan)
        return await task.verify(ctx, plan, result)


class FakeClock:
    """An injectable clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when


class ServerCredentials:
    """CredentialResolver: every host logs in with the test server's client key."""

    def __init__(self, srv: SSHTestServer) -> None:
        self.srv = srv

    async def resolve(self, host: HostRecord) -> Credentials:
        return Credentials(private_key=self.srv.client_key)


class ServerHostKeys:
    """HostKeyStore: every host's pinned key is the test server's."""

    def __init__(self, srv: SSHTestServer) -> None:
        self.srv = srv

    async def pinned(self, host: HostRecord) -> list[str]:
        return [self.srv.host_key_public]

    async def pin(self, host: HostRecord, key: object) -> None:
        raise AssertionError("a pinned host asked to pin a new key")


@contextlib.asynccontextmanager
async def real_engine(
    settings: Settings, srv: SSHTestServer, hosts: list[HostRecord], **kw: Any
) -> AsyncIterator[Engine]:
    """A real Engine and ConnectionManager over hosts served by the in-process SSH server."""
    manager = ConnectionManager(
        settings, credentials=ServerCredentials(srv), host_keys=ServerHostKeys(srv)
    )
    engine = Engine(settings, connections=manager, bus=EventBus(), hosts=StaticHosts(hosts), **kw)
    try:
        await engine.start()
        yield engine
    finally:
        await engine.aclose()
        await manager.aclose()


# webhook and mailbox fixtures: tests/receivers.py (a plugin of tests/conftest.py)
from tests.receivers import Mailbox, Webhook  # noqa: E402, F401
