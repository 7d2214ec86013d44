"""Issue 3 on the lab: mssp's own ConnectionManager and SSHConnector against real OpenSSH hosts.

Every test goes through the inventory the lab registered (vault credentials, pinned host keys) and
checks what happened on the host itself: its processes (pgrep), its files (sha256sum), its clock
(start/end times written in the host) and its sshd's log (LogLevel VERBOSE, written to
<lab>/hosts/<key>/sshd.log), which records every connection and every credential offered.
Uses the session's shared lab (conftest.py); a host changed here is put back. Needs root; fails,
never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import inspect
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from mssp import db as mssp_db
from mssp.config import Settings
from mssp.connections import ConnectionManager, Credentials
from mssp.connectors.base import ConnectOptions
from mssp.connectors.ssh import SSHConnector
from mssp.errors import AuthError, CommandError, CommandTimeout, HostKeyError
from mssp.inventory import HostRecord
from mssp.lab import state as lab_state
from mssp.lab.state import HostState
from mssp.store import credentials as store_creds
from mssp.store import inventory as store_inv
from mssp.store.credentials import VaultCredentialResolver
from mssp.store.hostkeys import DbHostKeyStore
from mssp.vault import unlock_from_settings

from .conftest import LabHandle

pytestmark = pytest.mark.lab

CAP = 64 * 1024
CREDENTIAL_TRACES = re.compile(
    r"publickey|password|keyboard-interactive|Accepted|Failed|authenticating user|"
    r"[Ii]nvalid user|userauth|Postponed",
)


# ---- helpers ---------------------------------------------------------------------------------
@dataclass
class Mssp:
    """mssp's connection path as the CLI builds it: inventory records, vault, pinned keys."""

    manager: ConnectionManager
    records: dict[str, HostRecord]

    def record(self, host: HostState) -> HostRecord:
        return self.records[host.full_name]


@contextlib.asynccontextmanager
async def mssp_path(
    settings: Settings, *, credentials: object | None = None, **manager_options: object
) -> AsyncIterator[Mssp]:
    vault = unlock_from_settings(settings)
    async with mssp_db.database(settings):
        records = {r.full_name: r for r in await store_inv.load_hosts()}
        manager = ConnectionManager(
            settings,
            credentials=credentials or VaultCredentialResolver(vault),  # type: ignore[arg-type]
            host_keys=DbHostKeyStore(),
            **manager_options,  # type: ignore[arg-type]
        )
        try:
            yield Mssp(manager, records)
        finally:
            await manager.aclose()
        assert manager.stats.open == 0


class SshdLog:
    """The lines a host's sshd wrote since this object was made."""

    def __init__(self, lab: LabHandle, host: HostState) -> None:
        self.path = lab_state.lab_dir(lab.settings) / "hosts" / host.key / "sshd.log"
        assert self.path.exists(), f"no sshd log at {self.path}"
        self.offset = self.path.stat().st_size

    def lines(self) -> list[str]:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            return f.read().decode("utf-8", "replace").splitlines()

    async def settled(self, *, connections: int, timeout: float = 10) -> list[str]:
        """The new lines of connections that began since, once ``connections`` began and ended.

        Lines naming the port of a connection that began earlier (a poll's late close) are left
        out; lines naming no port are kept.
        """
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines()
            ports = re.findall(r"Connection from \S+ port (\d+) ", "\n".join(lines))
            ended = [p for p in ports if any(_ends(line, p) for line in lines)]
            if len(ended) >= connections or time.monotonic() > deadline:
                return [line for line in lines if _port_of(line) in (None, *ports)]
            await asyncio.sleep(0.1)


def _port_of(line: str) -> str | None:
    found = re.search(r" port (\d+)\b", line)
    return found.group(1) if found else None


def _ends(line: str, port: str) -> bool:
    ending = re.search(r"Disconnected from|Connection closed by|Connection reset by", line)
    return bool(ending) and _port_of(line) == port


def lab_settings_with(lab: LabHandle, **changes: object) -> Settings:
    settings = lab.settings.replace(vault_key_file=lab.settings.config_dir / "lab-vault.key")
    return settings.replace(**changes)


async def until(
    predicate: Callable[[], object], *, timeout: float, what: str, step: float = 0.1
) -> object:
    """Poll ``predicate`` (sync or async) until it returns something true."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)


def direct(lab: LabHandle, index: int) -> HostState:
    hosts = lab.hosts(reach="direct")
    assert len(hosts) > index, "the lab has too few direct hosts"
    return hosts[index]


# ---- commands ------------------------------------------------------------------------------------
async def test_exit_codes_stdin_and_env(lab: LabHandle) -> None:
    host = direct(lab, 1)
    async with mssp_path(lab_settings_with(lab)) as m, m.manager.connection(m.record(host)) as c:
        assert (await c.run("hostname", timeout=20)).stdout.strip() == host.hostname
        seven = await c.run("echo out; echo err >&2; exit 7", timeout=20)
        assert (seven.exit_status, seven.stdout, seven.stderr) == (7, "out\n", "err\n")
        assert not seven.ok and not seven.truncated
        with pytest.raises(CommandError) as caught:
            await c.run("exit 3", check=True, timeout=20)
        assert caught.value.result.exit_status == 3
        killed = await c.run("kill -KILL $$", timeout=20)
        assert killed.exit_status is None  # ended by a signal: no exit code

        data = os.urandom(1_500_000)
        fed = await c.run("sha256sum; echo", stdin=data, timeout=30)
        assert fed.stdout.split()[0] == hashlib.sha256(data).hexdigest()
        lines = await c.run("wc -l; cat", stdin="one\ntwo\n", timeout=20)
        assert lines.stdout == "2\n"  # wc consumed all of stdin; cat found EOF

        secret = f"s3cr3t-{secrets.token_hex(8)} 'quoted' \"double\" $(not run) `nor this`"
        env = {"MSSP_PROBE": secret, "LC_PROBE": "x y"}
        seen = await c.run(
            'printf "%s|%s" "$MSSP_PROBE" "$LC_PROBE"; echo; '
            "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done",
            env=env, timeout=20,
        )  # fmt: skip
        first, _, cmdlines = seen.stdout.partition("\n")
        assert first == f"{secret}|x y"
        assert "s3cr3t-" not in cmdlines  # values travel by stdin, never on a command line
        assert "printf" in cmdlines  # the scan did see the command's own processes


async def test_large_output_is_capped_and_dropped_bytes_counted(lab: LabHandle) -> None:
    host = direct(lab, 1)
    produced = 5 * 1024 * 1024
    settings = lab_settings_with(lab, output_cap=CAP)
    async with mssp_path(settings) as m, m.manager.connection(m.record(host)) as c:
        result = await c.run(
            f"head -c {produced} /dev/zero | tr '\\0' x; echo tail-on-stderr >&2", timeout=60
        )
    assert result.exit_status == 0
    assert result.stdout == "x" * CAP
    assert result.stderr == "tail-on-stderr\n"
    assert result.truncated and result.dropped_bytes == produced - CAP


@pytest.mark.parametrize("user", ["root", "admin"])
async def test_timeout_kills_the_remote_process(lab: LabHandle, user: str) -> None:
    """The command and its child end on the host, not only on our side.

    For a root login OpenSSH refuses the client's signal request (privilege separation: sshd logs
    "session signalling requires privilege separation"), so the host's own deadline (coreutils
    ``timeout -s KILL``, 2 s after ours) kills the process group; for other users the signal
    request already does it.
    """
    host = direct(lab, 1)
    marker = secrets.randbelow(10_000) + 70_000  # `sleep N` seconds, unique on the host
    pattern = f"sleep {marker}[01]"  # as a regex it never matches its own command line
    async with mssp_path(lab_settings_with(lab)) as m:
        record = dataclasses.replace(m.record(host), username=user)
        async with m.manager.connection(record) as c:
            started = time.monotonic()
            with pytest.raises(CommandTimeout) as caught:
                await c.run(f"sleep {marker}1 & sleep {marker}0; wait", timeout=1.5)
            assert 1.5 <= time.monotonic() - started < 3
            assert caught.value.result.exit_status is None
            assert "killed" in str(caught.value)
            running = await c.run(f"pgrep -f '{pattern}' | wc -l", timeout=20)

            async def gone() -> bool:
                found = await c.run(f"pgrep -f '{pattern}'", timeout=20)
                return found.exit_status == 1 and found.stdout == ""

            await until(gone, timeout=8, what="the timed-out command and its child to end")
            killed_after = time.monotonic() - started
            alive = await c.run("id -un", timeout=20)  # the connection survived
            assert alive.stdout == f"{user}\n"
    print(f"{user}: {running.stdout.strip()} left at the timeout; gone {killed_after:.2f} s")
    # 1.5 s timeout + at most the 2 s host-side margin (rounded up) + polling
    assert killed_after < 5


async def test_sudo_with_the_admin_password(lab: LabHandle) -> None:
    """`admin` logs in with the lab key; sudo's password comes from the vault's lab-admin."""
    host = direct(lab, 2)
    settings = lab_settings_with(lab)
    async with mssp_path(settings) as m:
        admin_cred = await store_creds.find_credential(f"{host.client}/lab-admin")
        admin = dataclasses.replace(
            m.record(host), username="admin", become_credential_id=admin_cred.id
        )
        async with m.manager.connection(admin) as c:
            plain = await c.run("id -un", timeout=20)
            assert plain.stdout == "admin\n"
            root = await c.run("id -u; id -un", become=True, timeout=30)
            assert root.exit_status == 0, root.stderr
            assert root.stdout == "0\nroot\n"
            assert lab.admin_password not in root.stdout + root.stderr + root.command
            # the command's own stdin reaches it intact after sudo took the password
            piped = await c.run("cat; id -u", stdin="line 1\nline 2\n", become=True, timeout=30)
            assert piped.stdout == "line 1\nline 2\n0\n"
            with_env = await c.run('echo "$WHO"', env={"WHO": "me"}, become=True, timeout=30)
            assert with_env.stdout == "me\n"
            # while sudo runs, no process on the host carries the password in its command line
            scan = await c.run(
                "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done",
                become=True, timeout=30,
            )  # fmt: skip
            assert "sudo -S -p" in scan.stdout and lab.admin_password not in scan.stdout

    class WrongBecome:
        async def resolve(self, record: HostRecord) -> Credentials:
            real = await VaultCredentialResolver(unlock_from_settings(settings)).resolve(record)
            return dataclasses.replace(real, become_password="not-the-password")

    async with mssp_path(settings, credentials=WrongBecome()) as m:
        admin = dataclasses.replace(m.record(host), username="admin")
        async with m.manager.connection(admin) as c:
            with pytest.raises(AuthError, match="sudo refused the become password"):
                await c.run("id -u", become=True, timeout=30)


async def test_file_put_and_get_verify_the_hash(lab: LabHandle, tmp_path: Path) -> None:
    host = direct(lab, 1)
    data = os.urandom(3 * 1024 * 1024 + 17)
    local = tmp_path / "payload.bin"
    local.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    remote = f"/root/mssp-put-{secrets.token_hex(4)}.bin"
    async with mssp_path(lab_settings_with(lab)) as m, m.manager.connection(m.record(host)) as c:
        up = await c.put_file(local, remote, mode=0o640)
        assert (up.sha256, up.size, up.remote_path) == (digest, len(data), remote)
        there = await c.run(f"sha256sum {remote}; stat -c %a {remote}; ls -a /root", timeout=30)
        assert there.stdout.split()[:3] == [digest, remote, "640"]
        assert ".mssp-" not in there.stdout  # the temporary upload name is gone
        back = tmp_path / "back.bin"
        down = await c.get_file(remote, back)
        assert (down.sha256, down.size) == (digest, len(data))
        assert back.read_bytes() == data
        assert sorted(p.name for p in tmp_path.iterdir()) == ["back.bin", "payload.bin"]
        await c.run(f"rm -f {remote}", check=True, timeout=20)


# ---- host keys ---------------------------------------------------------------------------------
def _openssh_line(key: asyncssh.SSHKey) -> str:
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


async def _served_key(host: HostState) -> str:
    key = await asyncio.wait_for(asyncssh.get_server_host_key(host.address, host.port), 10)
    assert key is not None
    return _openssh_line(key)


async def _install_host_key(connector: SSHConnector, private_key: str, public_key: str) -> None:
    """Write a host key pair into the host and have its sshd (PID 1) re-exec itself to load it."""
    await connector.run(
        "umask 077; cat > /etc/ssh/ssh_host_ed25519_key.new && "
        "mv -f /etc/ssh/ssh_host_ed25519_key.new /etc/ssh/ssh_host_ed25519_key && "
        'printf "%s\\n" "$PUB" > /etc/ssh/ssh_host_ed25519_key.pub && kill -HUP 1',
        stdin=private_key, env={"PUB": public_key}, check=True, timeout=20,
    )  # fmt: skip


def _options(host: HostState, **fields: object) -> ConnectOptions:
    base: dict[str, object] = {
        "host": host.full_name, "address": host.address, "port": host.port,
        "username": "root", "connect_timeout": 10.0,
    }  # fmt: skip
    return ConnectOptions(**{**base, **fields})  # type: ignore[arg-type]


async def test_a_changed_host_key_is_refused_before_any_credential_is_sent(
    lab: LabHandle,
) -> None:
    host = direct(lab, 4)
    pinned = " ".join(host.host_key.split()[:2])
    host_dir = lab_state.lab_dir(lab.settings) / "hosts" / host.key
    original_private = (host_dir / "ssh_host_ed25519_key").read_text()
    new_key = asyncssh.generate_private_key("ssh-ed25519")
    new_public = _openssh_line(new_key)
    client_fp = asyncssh.import_private_key(lab.client_key).get_fingerprint("sha256")
    settings = lab_settings_with(lab)
    assert await _served_key(host) == pinned

    # the host is "reinstalled": a new host key, its sshd restarted (the pin stays the old one)
    either = _options(host, private_key=lab.client_key, pinned_host_keys=(pinned, new_public))
    async with SSHConnector(either) as c:
        await _install_host_key(c, new_key.export_private_key("openssh").decode(), new_public)
    try:
        await until(lambda: _is_served(host, new_public), timeout=15, what="the new host key")
        log = SshdLog(lab, host)
        async with mssp_path(settings) as m:
            with pytest.raises(HostKeyError, match="host key changed") as caught:
                async with m.manager.connection(m.record(host)):
                    pass
            assert new_key.get_fingerprint("sha256") in str(caught.value)
            stats = m.manager.stats
            assert (stats.handshakes, stats.failures, stats.retries) == (0, 1, 0)  # never retried
        # the connector itself, holding both a key and a password
        both = _options(
            host, username="admin", private_key=lab.client_key, password=lab.admin_password,
            pinned_host_keys=(pinned,),
        )  # fmt: skip
        with pytest.raises(HostKeyError):
            await SSHConnector(both).connect()
        refused = await log.settled(connections=2)
        assert sum("Connection from " in line for line in refused) == 2, refused
        assert sum("Disconnected from" in line for line in refused) == 2, refused
        # each one was ended by the client during key exchange, for the host key
        assert sum("Host key is not trusted" in line for line in refused) == 2, refused
        offered = [line for line in refused if CREDENTIAL_TRACES.search(line)]
        assert not offered, f"a credential reached the host: {offered}"
        assert client_fp not in "\n".join(refused)

        # control: the same log does record credentials, offered once the key is trusted
        control = SshdLog(lab, host)
        with pytest.raises(AuthError):
            wrong = _options(host, username="admin", password="wrong-password",
                             pinned_host_keys=(new_public,))  # fmt: skip
            await SSHConnector(wrong).connect()
        trusted = _options(host, private_key=lab.client_key, pinned_host_keys=(new_public,))
        async with SSHConnector(trusted) as c:
            assert (await c.run("hostname", timeout=20)).stdout.strip() == host.hostname
        seen = await control.settled(connections=2)
        assert any("Failed password for admin" in line for line in seen), seen
        assert any("Accepted publickey for root" in line and client_fp in line for line in seen), (
            seen
        )
    finally:
        async with SSHConnector(either) as c:
            await _install_host_key(c, original_private, host.host_key)
        await until(lambda: _is_served(host, pinned), timeout=15, what="the original host key")
    async with mssp_path(settings) as m, m.manager.connection(m.record(host)) as c:
        assert (await c.run("hostname", timeout=20)).stdout.strip() == host.hostname


async def _is_served(host: HostState, public: str) -> bool:
    try:
        return await _served_key(host) == public
    except (OSError, asyncssh.Error, TimeoutError):
        return False  # sshd is re-executing itself


# ---- reconnect, pool, limits -------------------------------------------------------------------
async def test_reconnects_after_the_host_restarts_its_sshd(lab: LabHandle) -> None:
    host = direct(lab, 3)
    log = SshdLog(lab, host)
    settings = lab_settings_with(lab)
    boot = "cut -d' ' -f22 /proc/1/stat"  # PID 1 (sshd) start time: new on every boot
    async with mssp_path(settings, connect_attempts=15, backoff_base=0.2, backoff_cap=1.0) as m:
        record = m.record(host)
        async with m.manager.connection(record) as first:
            before = (await first.run(boot, check=True, timeout=20)).stdout
            await first.run(
                "nohup sh -c 'sleep 0.5; /usr/sbin/mssp-lab-reboot' >/dev/null 2>&1 </dev/null &",
                check=True, timeout=20,
            )  # fmt: skip
        await until(lambda: not first.is_connected, timeout=20, what="the old connection's end")
        async with m.manager.connection(record) as second:
            assert second is not first
            after = await second.run(f"{boot}; hostname", check=True, timeout=20)
        booted, hostname = after.stdout.split()
        assert hostname == host.hostname and booted != before.strip()  # a new boot, same host
        assert m.manager.stats.handshakes == 2
    lines = log.lines()
    assert any(line.startswith("boot ") for line in lines), lines  # the supervisor's new boot
    # one login before the reboot, one after: the dead connection was replaced, not retried
    assert sum("Accepted publickey for root" in line for line in lines) == 2, lines


async def test_the_pool_reuses_connections(lab: LabHandle) -> None:
    a, b = direct(lab, 1), direct(lab, 2)
    log = SshdLog(lab, a)

    async def one(m: Mssp, host: HostState) -> None:
        async with m.manager.connection(m.record(host)) as c:
            await c.run("true", check=True, timeout=20)

    async with mssp_path(lab_settings_with(lab)) as m:
        for _ in range(5):
            await one(m, a)
        await asyncio.gather(*(one(m, a) for _ in range(5)))
        await one(m, b)
        stats = m.manager.stats
        assert (stats.handshakes, stats.reuses, stats.open) == (2, 9, 2)
    lines = await log.settled(connections=1)
    assert sum("Connection from " in line for line in lines) == 1, lines
    assert sum("Accepted publickey for root" in line for line in lines) == 1, lines

    # an idle connection is closed after idle_close; the next run logs in again
    log = SshdLog(lab, a)
    async with mssp_path(lab_settings_with(lab, idle_close=0.5)) as m:
        await one(m, a)
        await until(lambda: m.manager.stats.idle_closed == 1, timeout=5, what="the idle close")
        assert m.manager.stats.open == 0
        await one(m, a)
        assert m.manager.stats.handshakes == 2
    lines = await log.settled(connections=2)
    assert sum("Accepted publickey for root" in line for line in lines) == 2, lines


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, delta in events:  # at equal times an end (-1) sorts before a start
        running += delta
        peak = max(peak, running)
    return peak


async def test_the_per_client_limit_holds(lab: LabHandle) -> None:
    """Eight commands on four hosts of one client; the hosts' own clocks say how many overlapped."""
    hosts = lab.hosts(reach="direct")[:4]
    assert len({h.client for h in hosts}) == 1

    async def measure(limit: int) -> int:
        settings = lab_settings_with(lab, per_client_limit=limit, forks=100)
        times = f"/tmp/mssp-limit-{secrets.token_hex(4)}"
        command = (
            f"echo start $(date +%s.%N) $$ >> {times}; sleep 0.5; "
            f"echo end $(date +%s.%N) $$ >> {times}"
        )
        async with mssp_path(settings) as m:

            async def one(host: HostState) -> None:
                async with m.manager.connection(m.record(host)) as c:
                    await c.run(command, check=True, timeout=30)

            await asyncio.gather(*(one(h) for h in hosts for _ in range(2)))
            assert m.manager.stats.max_held <= limit
            intervals = []
            for h in hosts:
                async with m.manager.connection(m.record(h)) as c:
                    text = (await c.run(f"cat {times}; rm -f {times}", check=True)).stdout
                marks = {
                    (kind, pid): float(at)
                    for kind, at, pid in map(str.split, text.split("\n")[:-1])
                }
                intervals += [
                    (at, marks[("end", pid)])
                    for (kind, pid), at in marks.items()
                    if kind == "start"
                ]
        assert len(intervals) == 8
        return _max_overlap(intervals)

    assert await measure(2) == 2
    assert await measure(8) > 2  # the measurement does see overlap when the limit allows it
