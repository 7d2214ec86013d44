"""The host-side deadline: `exec /usr/bin/timeout …` first, the portable guard where it is missing.

Hosts without /usr/bin/timeout are real here: the test server runs each command in a private
mount namespace where an overlay on /usr/bin hides ``timeout`` (a whiteout), so the login shell's
``exec /usr/bin/timeout`` really fails. ``nixlike`` keeps a copy of ``timeout`` elsewhere on PATH
(as NixOS does), ``no_timeout`` has none at all. Needs root, unshare and overlayfs: fails loudly
without them. Every command appends a line to a file, so "it ran exactly once" is counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shlex
import shutil
import stat
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from mssp.connectors import sshexec
from mssp.connectors.base import CommandResult
from mssp.connectors.ssh import SSHConnector
from mssp.connectors.sshexec import remote_deadline, wrap_command
from mssp.errors import CommandTimeout
from tests.connectors.conftest import ssh_options
from tests.connectors.test_ssh_become import PASSWORD, USER, sudo_sandbox
from tests.sshserver import SSHTestServer, ssh_test_server

__all__ = ["sudo_sandbox"]  # a fixture, used by name

Wrapper = Callable[[list[str]], list[str]]
PROBE = "test -e /usr/bin/timeout"
MiB = 1024 * 1024


def fast(command: str, seconds: int) -> str:
    return f"exec /usr/bin/timeout -s KILL {seconds} sh -c {shlex.quote(command)}"


def portable(command: str, seconds: int) -> str:
    return remote_deadline(command, seconds - sshexec.REMOTE_DEADLINE_MARGIN, portable=True)


class Hider:
    """Builds command wrappers that hide /usr/bin/timeout in a private mount namespace."""

    def __init__(self, root: Path) -> None:
        self.whiteouts = root / "whiteouts"
        self.whiteouts.mkdir()
        os.mknod(self.whiteouts / "timeout", stat.S_IFCHR | 0o600, os.makedev(0, 0))
        self.elsewhere = root / "nix-profile" / "bin"
        self.elsewhere.mkdir(parents=True)
        shutil.copy2("/usr/bin/timeout", self.elsewhere / "timeout")
        root.chmod(0o755)

    @property
    def mount(self) -> str:
        return f"mount -t overlay overlay -o lowerdir={self.whiteouts}:/usr/bin /usr/bin"

    def wrapper(self, *, timeout_elsewhere: bool, login_shell: str = "bash") -> Wrapper:
        path = f'PATH={self.elsewhere}:"$PATH" ' if timeout_elsewhere else ""
        script = f'{self.mount} && {path}exec "$@"'

        def wrap(argv: list[str]) -> list[str]:
            if argv[:2] == ["bash", "-c"]:
                argv = [login_shell, "-c", *argv[2:]]
            return [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
                *argv,
            ]

        return wrap


@pytest.fixture(scope="module")
def hider(tmp_path_factory: pytest.TempPathFactory) -> Hider:
    if os.geteuid() != 0:
        pytest.fail("the remote deadline tests need root (they mount an overlay on /usr/bin)")
    if shutil.which("unshare") is None:
        pytest.fail("the remote deadline tests need unshare installed")
    hider = Hider(tmp_path_factory.mktemp("no-usr-bin-timeout"))
    check = subprocess.run(
        hider.wrapper(timeout_elsewhere=False)(["bash", "-c", "test -e /usr/bin/timeout"]),
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 1:
        pytest.fail(f"could not hide /usr/bin/timeout with an overlay: {check.stderr}")
    return hider


@pytest.fixture(params=["bash", "dash"])
async def nixlike(request: pytest.FixtureRequest, hider: Hider) -> AsyncIterator[SSHTestServer]:
    """A host whose login shell (bash or dash) finds no /usr/bin/timeout, but one on PATH."""
    wrap = hider.wrapper(timeout_elsewhere=True, login_shell=request.param)
    async with ssh_test_server(command_wrapper=wrap) as srv:
        yield srv


@pytest.fixture
async def no_timeout(hider: Hider) -> AsyncIterator[SSHTestServer]:
    """A host with no ``timeout`` at all."""
    async with ssh_test_server(command_wrapper=hider.wrapper(timeout_elsewhere=False)) as srv:
        yield srv


def innermost(line: str) -> str:
    """The line under the become and env wrappers (each passes it on as its last argument)."""
    while line.startswith(("sudo ", "sh -c 'echo MSSP-BECOME-", "sh -c 'eval ")):
        line = shlex.split(line)[-1]
    return line


def sent(srv: SSHTestServer) -> list[str]:
    return [c.command or "" for c in srv.commands]


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# ---- what is sent --------------------------------------------------------------------------
def test_the_fast_line_and_the_portable_guard() -> None:
    command = "echo 'it''s'; exit 3"
    assert remote_deadline(command, None) == command
    assert remote_deadline(command, None, portable=True) == command
    assert remote_deadline(command, 0.3) == fast(command, 3)
    assert remote_deadline(command, 600) == fast(command, 602)
    guard = remote_deadline(command, 600, portable=True)
    assert guard.startswith(
        "sh -c 'if command -v timeout >/dev/null 2>&1; then exec timeout -s KILL 602"
    )
    assert guard.endswith(f" sh {shlex.quote(command)}")
    # env and become wrap the fast line as their inner line; no value on any line
    wrapped = wrap_command(command, env={"K": "secret-v"}, become=True, username="u", timeout=10)
    assert innermost(wrapped.remote_command) == fast(command, 12)
    assert "secret-v" not in wrapped.remote_command
    assert wrapped.preamble == b"export K=secret-v\n"


async def test_the_fast_line_is_sent_and_timeout_is_the_commands_parent(
    ssh_server: SSHTestServer,
) -> None:
    async with SSHConnector(ssh_options(ssh_server)) as conn:
        result = await conn.run("cat /proc/$PPID/comm; exit 4", timeout=10)
        bare = await conn.run("echo bare")
    assert (result.exit_status, result.stdout, result.stderr) == (4, "timeout\n", "")
    assert sent(ssh_server) == [fast("cat /proc/$PPID/comm; exit 4", 12), "echo bare"]
    assert bare.stdout == "bare\n"


# ---- a host without /usr/bin/timeout -------------------------------------------------------
async def test_missing_usr_bin_timeout_runs_the_command_once_then_goes_portable(
    nixlike: SSHTestServer, tmp_path: Path
) -> None:
    log = tmp_path / "runs"
    command = f"echo run >> {log}; echo out; echo err >&2; cat /proc/$PPID/comm; exit 3"
    async with SSHConnector(ssh_options(nixlike)) as conn:
        first = await conn.run(command, timeout=10)
        assert (first.exit_status, first.stdout, first.stderr) == (3, "out\ntimeout\n", "err\n")
        assert lines(log) == ["run"]
        assert sent(nixlike) == [fast(command, 12), PROBE, portable(command, 12)]
        # the same connection goes straight to the portable guard
        second = await conn.run(command, timeout=10)
        assert (second.exit_status, second.stdout) == (3, "out\ntimeout\n")
        assert lines(log) == ["run", "run"]
        assert sent(nixlike)[3:] == [portable(command, 12)]
        # no timeout: the bare command, as everywhere
        assert (await conn.run("echo bare")).stdout == "bare\n"
        assert sent(nixlike)[4:] == ["echo bare"]
    # a new connection tries the fast line once more (the memory is per connection)
    async with SSHConnector(ssh_options(nixlike)) as conn:
        third = await conn.run(command, timeout=10)
    assert third.exit_status == 3 and lines(log) == ["run"] * 3
    assert sent(nixlike)[5:] == [fast(command, 12), PROBE, portable(command, 12)]


async def test_missing_timeout_everywhere_runs_unguarded_once(
    no_timeout: SSHTestServer, tmp_path: Path
) -> None:
    log = tmp_path / "runs"
    async with SSHConnector(ssh_options(no_timeout)) as conn:
        result = await conn.run(f"echo run >> {log}; cat /proc/$PPID/comm", timeout=10)
    assert result.exit_status == 0 and result.stdout != "timeout\n", result
    assert lines(log) == ["run"]
    assert len(no_timeout.commands) == 3


async def test_the_retry_sends_stdin_again(nixlike: SSHTestServer, tmp_path: Path) -> None:
    log = tmp_path / "runs"
    payload = os.urandom(3 * MiB)
    async with SSHConnector(ssh_options(nixlike)) as conn:
        result = await conn.run(f"echo run >> {log}; sha256sum", stdin=payload, timeout=30)
    assert result.stdout.split()[0] == hashlib.sha256(payload).hexdigest(), result
    assert lines(log) == ["run"]
    assert len(nixlike.commands) == 3


async def test_the_retry_reads_env_from_stdin_again(nixlike: SSHTestServer, tmp_path: Path) -> None:
    log = tmp_path / "runs"
    secret = "s3cr3t 'quoted' $HOME `id`\nline2"
    async with SSHConnector(ssh_options(nixlike)) as conn:
        result = await conn.run(
            f'echo run >> {log}; printf "%s|" "$MSSP_TOKEN"; cat',
            env={"MSSP_TOKEN": secret},
            stdin="after-env",
            timeout=10,
        )
    assert (result.exit_status, result.stdout) == (0, secret + "|after-env"), result
    assert lines(log) == ["run"]
    assert len(nixlike.commands) == 3
    assert all("s3cr3t" not in command for command in sent(nixlike))


async def test_the_host_deadline_holds_on_the_portable_guard(
    nixlike: SSHTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # signals refused (an OpenSSH root login): only the host's own timeout can stop it
    monkeypatch.setattr(sshexec, "REMOTE_DEADLINE_MARGIN", 0)
    nixlike.ignore_signals = True
    marker = tmp_path / "survived"
    async with SSHConnector(ssh_options(nixlike)) as conn:
        with pytest.raises(CommandTimeout):
            await conn.run(f"sleep 2; touch {marker}", timeout=0.3)
    assert sent(nixlike)[1:] == [PROBE, portable(f"sleep 2; touch {marker}", 1)]
    await asyncio.sleep(2.5)
    assert not marker.exists()


@pytest.fixture
async def sudo_without_timeout(sudo_sandbox: Wrapper, hider: Hider) -> AsyncIterator[SSHTestServer]:
    hide = hider.wrapper(timeout_elsewhere=True)
    async with ssh_test_server(
        username=USER, command_wrapper=lambda a: hide(sudo_sandbox(a))
    ) as srv:
        yield srv


async def test_the_retry_with_become_answers_sudo_again(
    sudo_without_timeout: SSHTestServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    srv = sudo_without_timeout
    log = tmp_path_factory.mktemp("become") / "runs"  # root writes it, after sudo
    command = f'id -u; echo run >> {log}; printf "%s|" "$SECRET_ENV"; cat'
    async with SSHConnector(ssh_options(srv, become_password=PASSWORD)) as conn:
        result = await conn.run(
            command, become=True, stdin="in\n", env={"SECRET_ENV": "via-stdin"}, timeout=30
        )
        assert (result.exit_status, result.stdout, result.stderr) == (0, "0\nvia-stdin|in\n", "")
        assert lines(log) == ["run"]
        assert len(srv.commands) == 3 and sent(srv)[1] == PROBE
        assert innermost(sent(srv)[0]) == fast(command, 32)
        assert innermost(sent(srv)[2]) == portable(command, 32)
        again = await conn.run(
            command, become=True, stdin="2\n", env={"SECRET_ENV": "x"}, timeout=30
        )
        assert again.stdout == "0\nx|2\n" and lines(log) == ["run", "run"]
        assert len(srv.commands) == 4 and innermost(sent(srv)[3]) == portable(command, 32)
    for record in srv.commands:
        assert PASSWORD not in (record.command or "") and "via-stdin" not in (record.command or "")


# ---- the corner: a command that fails exactly like a missing /usr/bin/timeout -----------------
async def test_a_command_failing_like_a_missing_timeout_is_not_sent_again(
    ssh_server: SSHTestServer, hider: Hider, tmp_path: Path
) -> None:
    # The host has /usr/bin/timeout; the command itself enters a namespace without it and
    # execs it there, from sh: the very words, status and empty stdout of the failed fast line.
    log = tmp_path / "runs"
    inner = f"{hider.mount} && exec /usr/bin/timeout 1 true"
    command = (
        f"echo run >> {log}; exec unshare --mount --propagation private sh -c {shlex.quote(inner)}"
    )
    async with SSHConnector(ssh_options(ssh_server)) as conn:
        result = await conn.run(command, timeout=10)
        assert result.exit_status == 127 and result.stdout == "", result
        assert sshexec._looks_like_no_fast_timeout(result), result.stderr
        assert lines(log) == ["run"]
        assert sent(ssh_server) == [fast(command, 12), PROBE]
        # the connection keeps the fast line
        await conn.run("true", timeout=10)
        assert sent(ssh_server)[2:] == [fast("true", 12)]


# ---- what each login shell says when /usr/bin/timeout is missing ----------------------------
RECORDED = {
    # Debian 12 packages (busybox-static 1.35, zsh 5.9, mksh 59c, tcsh 6.24, fish 3.6): `SHELL -c
    # 'exec /usr/bin/timeout -s KILL 3 sh -c "echo hi"'` with the path missing
    "busybox sh": (127, "sh: exec: line 0: /usr/bin/timeout: not found\n"),
    "zsh": (127, "zsh:1: no such file or directory: /usr/bin/timeout\n"),
    "mksh": (127, "E: mksh: /usr/bin/timeout: inaccessible or not found\n"),
    "tcsh": (1, "/usr/bin/timeout: Command not found.\n"),
    "fish": (
        127,
        "fish: Unknown command: /usr/bin/timeout\n"
        'exec /usr/bin/timeout -s KILL 3 sh -c "echo hi"\n     ^~~~~~~~~~~~~~~~^\n',
    ),
    "bash 4": (127, "bash: /usr/bin/timeout: No such file or directory\n"),
}


def _result(status: int | None, stdout: str, stderr: str) -> CommandResult:
    return CommandResult("x", status, stdout, stderr, 0.0)


@pytest.mark.parametrize("shell", sorted(RECORDED))
def test_recorded_login_shell_words_are_recognised(shell: str) -> None:
    status, stderr = RECORDED[shell]
    assert sshexec._looks_like_no_fast_timeout(_result(status, "", stderr))
    assert not sshexec._looks_like_no_fast_timeout(_result(status, "x", stderr))
    assert not sshexec._looks_like_no_fast_timeout(_result(0, "", stderr))


@pytest.mark.parametrize("shell", ["bash", "dash", "sh"])
def test_local_shell_words_are_recognised(shell: str, hider: Hider) -> None:
    line = fast("echo hi", 3)
    done = subprocess.run(
        hider.wrapper(timeout_elsewhere=False)([shell, "-c", line]),
        capture_output=True,
        text=True,
        check=False,
    )
    result = _result(done.returncode, done.stdout, done.stderr)
    assert sshexec._looks_like_no_fast_timeout(result), (done.returncode, done.stderr)


def test_other_failures_are_not_mistaken() -> None:
    for status, stderr in [
        (127, "sh: 1: frobnicate: not found\n"),
        (127, "timeout: failed to run command 'sh': No such file or directory\n"),
        (126, "bash: line 1: /usr/bin/timeout: Permission denied\n"),
        (1, "cat: /usr/bin/timeout: Permission denied\n"),
    ]:
        assert not sshexec._looks_like_no_fast_timeout(_result(status, "", stderr)), stderr
