"""become=True against the machine's real sudo, with a real password check.

The test server runs each command as an unprivileged user "msspbecome" inside a private mount
namespace where /etc/passwd, /etc/group, /etc/shadow and /etc/sudoers are bind-mounted copies
that add that user (password known to the test, sudo rights with a password, no ticket caching).
Nothing outside the namespace changes. Needs root, sudo, unshare and setpriv: fails loudly
without them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from mssp.connectors.ssh import SSHConnector
from mssp.errors import AuthError
from tests.connectors.conftest import ssh_options
from tests.sshserver import SSHTestServer, ssh_test_server

UID = 4242
USER = "msspbecome"
PASSWORD = "Tr0ub4dor&3-become"


@pytest.fixture(scope="module")
def sudo_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Callable[[list[str]], list[str]]:
    if os.geteuid() != 0:
        pytest.fail("the become tests need root (they build a private mount namespace)")
    for tool in ("sudo", "unshare", "setpriv", "openssl"):
        if shutil.which(tool) is None:
            pytest.fail(f"the become tests need {tool} installed")
    root = tmp_path_factory.mktemp("sudo-sandbox")
    root.chmod(0o755)
    hashed = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"],
        input=PASSWORD,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    files = {
        "passwd": Path("/etc/passwd").read_text() + f"{USER}:x:{UID}:{UID}::/tmp:/bin/sh\n",
        "group": Path("/etc/group").read_text() + f"{USER}:x:{UID}:\n",
        "shadow": Path("/etc/shadow").read_text() + f"{USER}:{hashed}:19000:0:99999:7:::\n",
        "sudoers": (
            "Defaults !lecture\nDefaults timestamp_timeout=0\nDefaults env_reset\n"
            f"root ALL=(ALL:ALL) ALL\n{USER} ALL=(ALL:ALL) ALL\n"
        ),
    }
    for name, text in files.items():
        (root / name).write_text(text)
    (root / "shadow").chmod(0o640)
    (root / "sudoers").chmod(0o440)
    binds = " && ".join(f"mount --bind {root}/{name} /etc/{name}" for name in files)
    script = f'{binds} && exec setpriv --reuid={UID} --regid={UID} --clear-groups -- "$@"'

    def wrap(argv: list[str]) -> list[str]:
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv]

    return wrap


@pytest.fixture
async def sudo_server(
    sudo_sandbox: Callable[[list[str]], list[str]],
) -> AsyncIterator[SSHTestServer]:
    async with ssh_test_server(username=USER, command_wrapper=sudo_sandbox) as srv:
        yield srv


def _no_password_anywhere(srv: SSHTestServer) -> None:
    for record in srv.commands:
        assert PASSWORD not in (record.command or "")
        assert all(PASSWORD not in v for v in record.env.values())


async def test_become_with_a_password_runs_as_root(sudo_server: SSHTestServer) -> None:
    options = ssh_options(sudo_server, become_password=PASSWORD)
    async with SSHConnector(options) as conn:
        plain = await conn.run("id -u")
        assert plain.stdout == f"{UID}\n"
        result = await conn.run(
            'id -u; printf "%s|" "$SECRET_ENV"; cat',
            become=True,
            stdin="in\n",
            env={"SECRET_ENV": "via-stdin"},
        )
    assert result.exit_status == 0, result
    assert result.stdout == "0\nvia-stdin|in\n"
    # sudo's prompt is answered and removed; nothing of it leaks into the output
    assert "mssp-sudo" not in result.stderr and result.stderr == ""
    _no_password_anywhere(sudo_server)


async def test_become_exit_status_and_stderr_pass_through(sudo_server: SSHTestServer) -> None:
    options = ssh_options(sudo_server, become_password=PASSWORD)
    async with SSHConnector(options) as conn:
        result = await conn.run("echo oops >&2; exit 5", become=True)
    assert (result.exit_status, result.stderr) == (5, "oops\n")


async def test_become_with_a_wrong_password_is_an_auth_error(sudo_server: SSHTestServer) -> None:
    options = ssh_options(sudo_server, become_password="not-the-password")
    async with SSHConnector(options) as conn:
        with pytest.raises(AuthError, match="refused the become password") as info:
            await conn.run("touch /root/never", become=True, timeout=30)
        assert "not-the-password" not in str(info.value)
        assert conn.is_connected
    _no_password_anywhere(sudo_server)


async def test_become_without_a_password_says_so(sudo_server: SSHTestServer) -> None:
    async with SSHConnector(ssh_options(sudo_server)) as conn:
        with pytest.raises(AuthError, match="no become password"):
            await conn.run("id", become=True, timeout=30)
