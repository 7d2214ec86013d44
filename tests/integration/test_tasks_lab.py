"""Maintenance tasks on the lab's real hosts: updates from the lab repository, accounts, services,
check mode that changes nothing, a leaver disabled across a client through `mssp run`, and a
reboot that is waited for. Needs root and the lab; fails, never skips.

Each test works on its own lab host (the session's lab is shared): updates on the last direct
host, accounts on the second, the leaver run on the third and fourth.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import asyncssh
import pytest

from mssp.connectors.base import ConnectOptions
from mssp.connectors.ssh import SSHConnector
from mssp.engine.state import HostState as Outcome
from mssp.inventory import HostRecord
from mssp.lab.state import HostState
from mssp.vault import Secret
from tests.tasks.helpers import run_task

from .conftest import LabHandle, run_mssp

pytestmark = pytest.mark.lab

SNAPSHOT = (
    "sha256sum /etc/passwd /etc/shadow /etc/group /etc/gshadow; "
    "dpkg-query -W -f='${Package} ${Version}\\n' | sha256sum; "
    "ls -la --time-style=+%s /home /tmp /etc/ssh"
)
# Files written since a moment (the host's clock) where a task could write. Not all of "/": the
# host's lower layer is the live machine, whose own logs change underneath.
WRITTEN_SINCE = (
    "find /etc /home /root /tmp /srv /opt /usr/local /var/lib/apt /var/lib/dpkg /var/cache/apt "
    "/var/log/apt -newermt @{since} -print 2>/dev/null; true"
)


def record(h: HostState) -> HostRecord:
    return HostRecord(h.client, h.site, h.name, h.address, h.port, h.username,
                      options=dict(h.options))  # fmt: skip


class RecordingSSHConnector(SSHConnector):
    """The real connector, keeping every command line it sent (to prove secrets were not in one)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[str] = []

    async def run(self, command: str, **kwargs):  # type: ignore[override]
        self.sent.append(command)
        return await super().run(command, **kwargs)


@contextlib.asynccontextmanager
async def connected(lab: LabHandle, h: HostState) -> AsyncIterator[RecordingSSHConnector]:
    conn = RecordingSSHConnector(
        ConnectOptions(
            host=h.full_name,
            address=h.address,
            port=h.port,
            username=h.username,
            private_key=lab.client_key,
            pinned_host_keys=(h.host_key,),
            connect_timeout=10.0,
        )
    )
    await conn.connect()
    try:
        yield conn
    finally:
        await conn.close()


async def login_as(h: HostState, user: str, key: asyncssh.SSHKey) -> str:
    """whoami over SSH as `user` with `key` (raises PermissionDenied when refused)."""
    async with asyncssh.connect(
        h.address, h.port, username=user, client_keys=[key], password=None,
        known_hosts=([asyncssh.import_public_key(h.host_key)], [], []),
        agent_path=None, connect_timeout=10, preferred_auth="publickey",
    ) as conn:  # fmt: skip
        return (await conn.run("whoami", check=True, timeout=20)).stdout.strip()


async def test_check_mode_of_every_task_changes_nothing(lab: LabHandle, tmp_path) -> None:
    h = lab.hosts(reach="direct")[0]
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    script = tmp_path / "s.sh"
    script.write_text("touch /tmp/mssp-should-not-exist\n")
    runs = [
        ("facts", {}),
        ("updates.check", {"refresh": True}),
        ("updates.apply", {"reboot": "always"}),
        ("accounts.user", {"user": "jdoe", "ssh_key_add": key, "admin": "yes", "groups": "users"}),
        ("accounts.remove", {"user": "admin", "remove_home": True}),
        ("accounts.disable", {"user": "admin"}),
        ("service.restart", {"name": "ssh"}),
        ("reboot", {}),
        ("script", {"path": str(script)}),
    ]
    async with connected(lab, h) as conn:
        before = (await conn.run(SNAPSHOT, check=True)).stdout
        since = (await conn.run("date +%s.%N", check=True)).stdout.strip()
        await asyncio.sleep(0.05)
        states = {}
        for name, params in runs:
            outcome = await run_task(name, params, record(h), conn, check=True)
            states[name] = outcome.state
            assert outcome.state in (Outcome.OK, Outcome.CHANGED, Outcome.SKIPPED), (
                name, outcome.error)  # fmt: skip
        after = (await conn.run(SNAPSHOT, check=True)).stdout
        written = (await conn.run(WRITTEN_SINCE.format(since=since), check=True)).stdout
    assert written.split() == [], "check mode wrote files on the host"
    assert after.splitlines() == before.splitlines()
    assert states["updates.apply"] == Outcome.CHANGED and states["script"] == Outcome.SKIPPED


async def test_updates_found_applied_and_then_none(lab: LabHandle) -> None:
    h = lab.hosts(reach="direct")[-1]
    async with connected(lab, h) as conn:
        check = await run_task("updates.check", {}, record(h), conn)
        assert check.state == Outcome.OK, check.error
        pending = {p["name"]: (p["current"], p["available"]) for p in check.data["pending"]}
        lab_packages = {n: v for n, v in pending.items() if n.startswith("mssp-lab-")}
        assert lab_packages == {f"mssp-lab-tool-{x}": ("1.0", "1.1") for x in "abc"}
        applied = await run_task(
            "updates.apply", {"exclude": ["mssp-lab-tool-c"]}, record(h), conn, timeout=600
        )
        assert applied.state == Outcome.CHANGED, applied.error
        assert applied.data["after"] == {"mssp-lab-tool-a": "1.1", "mssp-lab-tool-b": "1.1"}
        assert applied.data["reboot"] == {
            "policy": "never", "required": None, "done": False, "pending": False
        }  # fmt: skip
        rest = await run_task("updates.check", {}, record(h), conn)
        assert [p["name"] for p in rest.data["pending"]] == ["mssp-lab-tool-c"]
        everything = await run_task("updates.apply", {}, record(h), conn, timeout=600)
        assert everything.state == Outcome.CHANGED, everything.error
        none = await run_task("updates.check", {}, record(h), conn)
        assert none.state == Outcome.OK and none.data["pending"] == []
        assert none.data["summary"] == "0 updates pending (0 security)"
        again = await run_task("updates.apply", {}, record(h), conn, timeout=600)
        assert again.state == Outcome.OK, again.error
        tool = await conn.run("mssp-lab-tool-a", check=True)
        assert tool.stdout.strip() == "mssp-lab-tool-a 1.1"


async def test_account_lifecycle_and_second_runs_unchanged(lab: LabHandle) -> None:
    h = lab.hosts(reach="direct")[1]
    key = asyncssh.generate_private_key("ssh-ed25519")
    public = key.export_public_key().decode().strip()
    password = Secret("Lab-jdoe-Pa55!") if callable(Secret) else "Lab-jdoe-Pa55!"
    secrets = {"credential:jdoe-pw": password}
    create = {"user": "jdoe", "comment": "Jane Doe", "ssh_key_add": public, "admin": "yes",
              "password_secret": "jdoe-pw"}  # fmt: skip
    async with connected(lab, h) as conn:
        made = await run_task("accounts.user", create, record(h), conn, secrets=secrets)
        assert made.state == Outcome.CHANGED, made.error
        assert await login_as(h, "jdoe", key) == "jdoe"
        modes = await conn.run(
            "stat -c '%a %U %G' /home/jdoe/.ssh /home/jdoe/.ssh/authorized_keys; "
            "id -nG jdoe; getent shadow jdoe | cut -d: -f2 | cut -c1-3",
            check=True,
        )
        lines = modes.stdout.splitlines()
        assert lines[0] == "700 jdoe jdoe" and lines[1] == "600 jdoe jdoe"
        assert "sudo" in lines[2].split() and lines[3] == "$y$"  # a yescrypt hash was set
        again = await run_task("accounts.user", create, record(h), conn, secrets=secrets)
        assert again.state == Outcome.OK and again.data["message"] == "nothing to change"
        assert any(c == "chpasswd" for c in conn.sent)  # the password went through stdin
        assert "Lab-jdoe-Pa55!" not in " ".join(conn.sent) + repr(made) + repr(again)

        drop = {"user": "jdoe", "key": public, "state": "absent"}
        assert (await run_task("accounts.key", drop, record(h), conn)).state == Outcome.CHANGED
        with pytest.raises(asyncssh.PermissionDenied):
            await login_as(h, "jdoe", key)
        assert (await run_task("accounts.key", drop, record(h), conn)).state == Outcome.OK
        add = {"user": "jdoe", "key": public}
        assert (await run_task("accounts.key", add, record(h), conn)).state == Outcome.CHANGED
        assert await login_as(h, "jdoe", key) == "jdoe"

        off = await run_task("accounts.disable", {"user": "jdoe"}, record(h), conn)
        assert off.state == Outcome.CHANGED, off.error
        with pytest.raises(asyncssh.PermissionDenied):
            await login_as(h, "jdoe", key)
        assert (await run_task("accounts.disable", {"user": "jdoe"}, record(h), conn)).state == (
            Outcome.OK
        )
        on = await run_task("accounts.enable", {"user": "jdoe"}, record(h), conn)
        assert on.state == Outcome.CHANGED, on.error
        assert await login_as(h, "jdoe", key) == "jdoe"

        gone = await run_task("accounts.remove", {"user": "jdoe", "remove_home": True},
                              record(h), conn)  # fmt: skip
        assert gone.state == Outcome.CHANGED, gone.error
        assert not (await conn.run("getent passwd jdoe")).ok
        assert not (await conn.run("test -e /home/jdoe")).ok
        assert (await run_task("accounts.remove", {"user": "jdoe"}, record(h), conn)).state == (
            Outcome.OK
        )


async def test_leaver_is_disabled_everywhere_at_the_client(lab: LabHandle) -> None:
    hosts = lab.hosts(reach="direct")
    holders = hosts[2:4]
    for h in holders:
        async with connected(lab, h) as conn:
            made = await run_task("accounts.user", {"user": "leaver1"}, record(h), conn)
            assert made.state == Outcome.CHANGED, made.error
    # the whole client: both sites (one reached through its relay agent) and the Windows host
    target = f"client:{hosts[0].client}"
    site = [h for h in lab.state().hosts if h.client == hosts[0].client]
    result = run_mssp(
        lab.env, "run", "accounts.disable", target, "--param", "user=leaver1", "--json",
        timeout=300,
    )  # fmt: skip
    summary = json.loads(result.stdout)
    states = {row["host"]: row["state"] for row in summary["hosts"]}
    # hosts without the user (the simulated Windows one too) are "ok": nothing to disable
    assert states == {h.full_name: ("changed" if h in holders else "ok") for h in site}, (
        result.stderr
    )
    for h in holders:
        async with connected(lab, h) as conn:
            shadow = (await conn.run("getent shadow leaver1", check=True)).stdout.split(":")
            assert shadow[1].startswith("!") and shadow[7] == "1"


async def test_service_status_without_systemd(lab: LabHandle) -> None:
    h = lab.hosts(reach="direct")[0]
    async with connected(lab, h) as conn:
        outcome = await run_task("service.status", {"name": "ssh"}, record(h), conn)
        assert outcome.data["service"]["manager"] == "sysv"
        assert outcome.data["service"]["exists"]
        missing = await run_task("service.restart", {"name": "nope"}, record(h), conn)
        assert missing.state == Outcome.FAILED and "no service 'nope'" in missing.error


async def test_facts_of_a_lab_host(lab: LabHandle) -> None:
    h = lab.hosts(reach="direct")[0]
    async with connected(lab, h) as conn:
        outcome = await run_task("facts", {}, record(h), conn)
    assert outcome.state == Outcome.OK, outcome.error
    facts = outcome.data["facts"]
    assert facts["hostname"] == h.hostname and facts["os"]["family"] == "debian"
    assert facts["package_manager"] == "apt" and facts["init"] == "sysv"
    assert "admin" in {u["name"] for u in facts["users"] if u["admin"]}


def test_facts_of_the_simulated_windows_host_through_mssp_run(lab: LabHandle) -> None:
    windows = [h for h in lab.state().hosts if h.transport == "winrm"]
    assert windows, "the lab has no simulated Windows host"
    result = run_mssp(lab.env, "run", "facts", windows[0].full_name, "--json", timeout=120)
    summary = json.loads(result.stdout)
    assert [row["state"] for row in summary["hosts"]] == ["ok"], result.stdout + result.stderr


async def test_a_host_that_cannot_reboot_fails_fast_and_clearly(lab: LabHandle) -> None:
    """Lab hosts have no systemd and no CAP_SYS_BOOT: the reboot program fails, and the task says
    so at once instead of waiting for its whole deadline."""
    h = lab.hosts(reach="direct")[0]
    plain = HostRecord(h.client, h.site, h.name, h.address, h.port, h.username)
    async with connected(lab, h) as conn:
        outcome = await run_task("reboot", {"timeout": 120}, plain, conn, timeout=180)
        assert outcome.state == Outcome.FAILED
        assert "the host refused to reboot" in outcome.error and outcome.duration < 30
        left = await conn.run("ls /tmp")
        assert "mssp-reboot" not in left.stdout


async def test_reboot_of_a_lab_host_is_waited_for(lab: LabHandle) -> None:
    h = lab.hosts(reach="direct")[-2]
    if not h.options.get("reboot_command"):
        pytest.fail(
            "the lab offers no way to reboot a host: its hosts need a `reboot_command` option "
            "(a program inside the host that makes the lab restart that host's namespace)",
            pytrace=False,
        )
    async with connected(lab, h) as conn:
        outcome = await run_task("reboot", {"timeout": 120}, record(h), conn, timeout=180)
        assert outcome.state == Outcome.CHANGED, outcome.error
        reboot = outcome.data["reboot"]
        assert reboot["boot_before"] != reboot["boot_after"] and reboot["reconnects"] >= 1
        assert (await conn.run("hostname", check=True)).stdout.strip() == h.hostname
