"""Fixtures for session tests: an in-process SSH server on its own loop thread, and an initialised
MSSP_HOME whose inventory points at it (so `mssp ssh` can run as a real child process)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner

from mssp.cli import cli
from tests.sshserver import SSHTestServer, ssh_test_server

T = TypeVar("T")
PASSPHRASE = "sessions test passphrase"
HOST = "acme/hq/srv1"


class LoopThread:
    """An event loop on a daemon thread: servers there outlive each test's own loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def server_thread() -> Iterator[tuple[LoopThread, SSHTestServer]]:
    runner = LoopThread()
    manager = ssh_test_server()
    srv = runner.call(manager.__aenter__())
    try:
        yield runner, srv
    finally:
        runner.call(manager.__aexit__(None, None, None))
        runner.stop()


@dataclass(frozen=True)
class Home:
    """An initialised MSSP_HOME with client acme, site hq and host srv1 -> the test server."""

    path: Path
    env: dict[str, str]
    server: SSHTestServer
    thread: LoopThread

    def invoke(self, *args: str, input: str | None = None) -> Any:
        return CliRunner().invoke(cli, list(args), env=self.env, input=input)

    @property
    def mssp(self) -> list[str]:
        return [str(Path(sys.executable).with_name("mssp"))]


def make_home(root: Path, srv: SSHTestServer, thread: LoopThread) -> Home:
    root.mkdir(parents=True, exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MSSP_")},
        "MSSP_HOME": str(root / "home"),
        "MSSP_VAULT_PASSPHRASE": PASSPHRASE,
    }
    home = Home(root / "home", env, srv, thread)
    key = root / "client_key"
    key.write_text(srv.client_key)
    key.chmod(0o600)
    for args in (
        ("init",),
        ("client", "add", "acme"),
        ("site", "add", "acme/hq"),
        ("cred", "add", "acme/login", "--ssh-key", str(key), "--user", srv.username),
        (
            "host",
            "add",
            HOST,
            "--address",
            "127.0.0.1",
            "--port",
            str(srv.port),
            "--user",
            srv.username,
            "--credential",
            "login",
        ),
    ):
        result = home.invoke(*args)
        assert result.exit_code == 0, (args, result.output)
    return home


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, server_thread) -> Home:
    thread, srv = server_thread
    return make_home(tmp_path_factory.mktemp("sessions"), srv, thread)
