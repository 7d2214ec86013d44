"""Secrets never appear in exception text: every failure that involved a secret is searched.

For each way a secret can be refused (a wrong login password, a wrong sudo password, a wrong key
passphrase, a private key that is not a key, a wrong vault passphrase, a connection that drops),
the whole formatted exception is searched: message, repr, args, and the full traceback with every
chained cause and context, as a log handler or a crash report would print it. The same goes for
what a fleet run stores and emits when a host refuses a password. Secrets are random canaries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import traceback
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import asyncssh
import pytest

from mssp.config import Settings
from mssp.connections import ConnectionManager, Credentials
from mssp.connectors.ssh import SSHConnector
from mssp.engine import Engine, StaticHosts
from mssp.errors import AuthError, MsspError, VaultError
from mssp.events import EventBus
from mssp.inventory import HostRecord
from mssp.models.runs import HostRun
from mssp.vault import Vault
from tests.connectors.conftest import ssh_options
from tests.connectors.test_ssh_become import USER, sudo_sandbox
from tests.engine.conftest import ServerHostKeys, make_hosts
from tests.sshserver import SSHTestServer, ssh_test_server

__all__ = ["sudo_sandbox"]  # a fixture, used by name


def canary(kind: str) -> str:
    return f"{kind}Canary-{secrets.token_hex(12)}"


def everything_about(exc: BaseException) -> str:
    """What any handler could print: str, repr, args, and the chained traceback."""
    parts = [str(exc), repr(exc), repr(exc.args), "".join(traceback.format_exception(exc))]
    for attr in ("message", "title", "detail"):
        parts.append(repr(getattr(exc, attr, "")))
    return "\n".join(parts)


def assert_absent(secret_values: Iterable[str], text: str) -> None:
    leaked = [s for s in secret_values if s in text or s[:16] in text]
    assert leaked == [], text


async def test_wrong_login_password_error_holds_no_password(ssh_server: SSHTestServer) -> None:
    wrong = canary("Login")
    with pytest.raises(AuthError) as info:
        async with SSHConnector(ssh_options(ssh_server, key=False, password=wrong)):
            pass
    assert any(a.method == "password" for a in ssh_server.auth_log)  # it was really tried
    assert_absent([wrong], everything_about(info.value))


async def test_wrong_key_passphrase_and_garbage_key_errors_hold_no_secret(
    ssh_server: SSHTestServer,
) -> None:
    right, wrong = canary("KeyPass"), canary("WrongPass")
    encrypted = ssh_server.client_key_obj.export_private_key("openssh", passphrase=right).decode()
    with pytest.raises(AuthError) as info:
        async with SSHConnector(
            ssh_options(ssh_server, private_key=encrypted, private_key_passphrase=wrong)
        ):
            pass
    assert_absent([right, wrong], everything_about(info.value))
    # A "key" that is really a pasted password must not be echoed back in the error either.
    pasted = canary("Pasted")
    with pytest.raises(AuthError) as info:
        async with SSHConnector(ssh_options(ssh_server, private_key=pasted)):
            pass
    assert_absent([pasted], everything_about(info.value))
    # A valid key: its private part appears in no error of a later failure.
    with pytest.raises(AuthError) as info:
        async with SSHConnector(
            ssh_options(ssh_server, private_key=encrypted, private_key_passphrase=None)
        ):
            pass
    body = encrypted.splitlines()[2]
    assert_absent([right, body], everything_about(info.value))


async def test_wrong_become_password_error_holds_no_password(sudo_sandbox) -> None:
    wrong = canary("Become")
    async with ssh_test_server(username=USER, command_wrapper=sudo_sandbox) as srv:
        async with SSHConnector(ssh_options(srv, become_password=wrong)) as conn:
            with pytest.raises(AuthError) as info:
                await conn.run("id -u", become=True)
    assert_absent([wrong], everything_about(info.value))


def test_wrong_vault_passphrase_error_holds_no_passphrase(tmp_path: Path) -> None:
    right, wrong = canary("Vault"), canary("NotVault")
    vault = Vault.create(tmp_path / "vault.json", right)
    with pytest.raises(VaultError) as info:
        Vault.unlock(tmp_path / "vault.json", wrong)
    assert_absent([right, wrong], everything_about(info.value))
    secret = canary("Stored")
    blob = vault.encrypt(secret.encode(), table="credential", row_id=1, field="secret")
    with pytest.raises(VaultError) as info:
        vault.decrypt(blob, table="credential", row_id=2, field="secret")
    assert_absent([right, secret], everything_about(info.value))


class _PasswordCredentials:
    def __init__(self, password: str) -> None:
        self.password = password

    async def resolve(self, host: HostRecord) -> Credentials:
        return Credentials(password=self.password)


@contextlib.asynccontextmanager
async def _engine(
    settings: Settings, srv: SSHTestServer, password: str
) -> AsyncIterator[tuple[Engine, list[object]]]:
    bus = EventBus()
    manager = ConnectionManager(
        settings,
        credentials=_PasswordCredentials(password),
        host_keys=ServerHostKeys(srv),
        connect_attempts=1,
    )
    engine = Engine(settings, connections=manager, bus=bus, hosts=StaticHosts(make_hosts(srv, 2)))
    events: list[object] = []
    async with bus.subscribe(lossless=True) as queue:
        await engine.start()
        try:
            yield engine, events
        finally:
            await engine.aclose()
            await manager.aclose()
            while not queue.empty():
                events.append(queue.get_nowait())


async def test_a_refused_password_in_a_fleet_run_is_in_no_row_event_or_log(
    db: Settings, ssh_server: SSHTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = canary("FleetLogin")
    async with _engine(db, ssh_server, wrong) as (engine, events):
        run_id = await engine.start_run("command", "all", params={"cmd": "true"})
        summary = await engine.wait(run_id)
        await engine.wait_idle()
    assert all(h.state in ("failed", "unreachable") and h.error for h in summary.hosts), summary
    assert any(a.method == "password" for a in ssh_server.auth_log)
    rows = await HostRun.filter(run_id=run_id).values()
    texts = [
        repr(rows),
        repr(summary),
        "\n".join(repr(e) for e in events),
        "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records),
    ]
    assert_absent([wrong], "\n".join(texts))


async def test_a_dropped_connection_error_holds_no_secret(ssh_server: SSHTestServer) -> None:
    become, env, stdin = canary("Become"), canary("Env"), canary("Stdin")
    options = ssh_options(ssh_server, become_password=become)
    async with SSHConnector(options) as conn:
        running = asyncio.ensure_future(
            conn.run("cat >/dev/null; sleep 5", env={"TOKEN": env}, stdin=stdin)
        )
        await asyncio.sleep(0.3)
        await ssh_server.stop()
        with pytest.raises((MsspError, asyncssh.Error)) as info:
            await running
    assert isinstance(info.value, MsspError), type(info.value)
    assert_absent([become, env, stdin], everything_about(info.value))
