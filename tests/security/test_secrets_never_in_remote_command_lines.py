"""Secrets never appear in remote command lines: /proc/*/cmdline is sampled while they are used.

The SSH connector's own tests check the *requested* command line (what the SSH exec request
carried). This promise test watches what the host's kernel shows every local user: the command
line of every process on the machine (``/proc/*/cmdline``), sampled in a tight loop from a thread
while commands run through a real SSH server as an unprivileged user with real sudo (the
``sudo_sandbox`` of tests/connectors/test_ssh_become.py: a private mount namespace, nothing
outside it changes). The secrets travel the three ways tasks use: the become password (answered
on sudo's prompt), a password on stdin (the ``chpasswd`` / ``openssl passwd -stdin`` style), and an
environment value (RESTIC_PASSWORD style, delivered on stdin by the connector). A control command
that does put a marker on its command line proves the sampler sees such things.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest

from mssp.connectors.ssh import SSHConnector
from tests.connectors.conftest import ssh_options
from tests.connectors.test_ssh_become import PASSWORD, USER, sudo_sandbox
from tests.sshserver import SSHTestServer, ssh_test_server

__all__ = ["sudo_sandbox"]  # a fixture, used by name


class CmdlineSampler:
    """Reads every /proc/<pid>/cmdline over and over until stopped; keeps what it saw."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cmdline-sampler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as fh:
                        line = fh.read()
                except OSError:  # the process ended between listdir and open
                    continue
                if line:
                    self.seen.add(line)
            self.rounds += 1

    def holding(self, needle: bytes) -> list[bytes]:
        return sorted(line for line in self.seen if needle in line)

    @contextmanager
    def running(self) -> Iterator[CmdlineSampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(10)


@pytest.fixture
async def sudo_server(sudo_sandbox) -> AsyncIterator[SSHTestServer]:
    async with ssh_test_server(username=USER, command_wrapper=sudo_sandbox) as srv:
        yield srv


async def test_secrets_never_in_remote_command_lines(sudo_server: SSHTestServer) -> None:
    stdin_secret = "StdinCanary-" + secrets.token_hex(12)
    env_secret = "EnvCanary-" + secrets.token_hex(12)
    control = "ControlMarker-" + secrets.token_hex(8)
    options = ssh_options(sudo_server, become_password=PASSWORD)
    sampler = CmdlineSampler()
    with sampler.running():
        async with SSHConnector(options) as conn:
            # the become password, answered on sudo's prompt; the command lingers to be seen
            became = await conn.run("sleep 0.4; id -u", become=True)
            # a password on stdin, hashed by a real tool as chpasswd-style tasks do; openssl
            # waits for the end of its input for 0.5 s, long enough for the sampler to see it
            hashed = await conn.run(
                "sleep 0.4; { cat; sleep 0.5; } | openssl passwd -6 -salt mssptest -stdin",
                become=True,
                stdin=stdin_secret + "\n",
            )
            # a secret in the environment (restic's RESTIC_PASSWORD), with and without become
            digests = [
                await conn.run(
                    'sleep 0.4; printf %s "$RESTIC_PASSWORD" | sha256sum',
                    become=become,
                    env={"RESTIC_PASSWORD": env_secret},
                )
                for become in (False, True)
            ]
            # the control: a marker that *is* on a command line must be seen
            await conn.run(f"sleep 0.4 # {control}")
            time.sleep(0.05)
    # The work really happened as root, with the secrets really delivered.
    assert became.stdout == "0\n", became
    local = subprocess.run(
        ["openssl", "passwd", "-6", "-salt", "mssptest", "-stdin"],
        input=stdin_secret + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert hashed.exit_status == 0 and hashed.stdout == local.stdout, hashed
    want = hashlib.sha256(env_secret.encode()).hexdigest()
    assert [d.stdout.split()[0] for d in digests] == [want, want], digests
    # The sampler saw the commands run, sudo itself, and the control marker.
    assert sampler.rounds > 20
    assert sampler.holding(b"sudo\0-S\0"), "the sampler never saw sudo run"
    assert sampler.holding(b"openssl\0passwd"), "the sampler never saw openssl run"
    assert sampler.holding(control.encode()), "the sampler cannot see command lines"
    # And no secret was ever on any process's command line.
    for secret in (PASSWORD, stdin_secret, env_secret):
        assert sampler.holding(secret.encode()) == [], secret
    # Nor in what the SSH server was asked to run (exec request, env requests).
    for record in sudo_server.commands:
        text = (record.command or "") + "".join(record.env.values())
        assert all(s not in text for s in (PASSWORD, stdin_secret, env_secret))
