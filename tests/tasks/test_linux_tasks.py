"""Linux tasks over real SSH (the in-process server runs commands on this machine).

Only read-only work and work inside a temporary directory happens here: nothing in these tests
installs packages, adds users or reboots this machine (the lab tests do that, inside lab hosts).
"""

from __future__ import annotations

import asyncio
import os
import shlex
from pathlib import Path

import pytest

from mssp.connectors.ssh import SSHConnector
from mssp.engine.state import HostState
from mssp.inventory import HostRecord
from tests.connectors.conftest import ssh_options
from tests.sshserver import ssh_test_server
from tests.tasks.helpers import run_task

HOST = HostRecord("acme-dental", "hq", "files01", "127.0.0.1", 22, "root")


@pytest.fixture
async def ssh():
    async with ssh_test_server() as srv:
        conn = SSHConnector(ssh_options(srv))
        await conn.connect()
        yield srv, conn
        await conn.close()


async def test_facts_of_this_machine(ssh) -> None:
    _, conn = ssh
    outcome = await run_task("facts", {}, HOST, conn)
    assert outcome.state == HostState.OK, outcome.error
    facts = outcome.data["facts"]
    lines = Path("/etc/os-release").read_text().splitlines()
    release = dict(line.split("=", 1) for line in lines if "=" in line)
    assert facts["os"]["id"] == release["ID"].strip('"')
    assert facts["kernel"]["release"] == os.uname().release
    assert facts["cpu"]["count"] == os.cpu_count()
    assert facts["package_manager"] == "apt"
    assert "root" in {u["name"] for u in facts["users"]}
    assert set(facts["updates"]) == {"pending", "security", "packages", "security_packages"}


async def test_facts_check_mode_runs_nothing(ssh) -> None:
    srv, conn = ssh
    before = len(srv.commands)
    outcome = await run_task("facts", {}, HOST, conn, check=True)
    assert outcome.state == HostState.OK and len(srv.commands) == before


async def test_updates_check_reads_apt_without_locking(ssh) -> None:
    srv, conn = ssh
    outcome = await run_task("updates.check", {}, HOST, conn)
    assert outcome.state == HostState.OK, outcome.error
    assert outcome.data["package_manager"] == "apt"
    assert outcome.data["summary"].startswith(f"{len(outcome.data['pending'])} updates pending")
    sent = " ".join(c.command or "" for c in srv.commands)
    assert "apt-get -s -o Debug::NoLocking=1" in sent and "apt-get update" not in sent
    assert "-o Dir::Cache::pkgcache= " in sent  # not even apt's binary cache is rewritten


async def test_service_status_without_systemd_uses_init_scripts(ssh) -> None:
    _, conn = ssh
    outcome = await run_task("service.status", {"name": "ssh"}, HOST, conn)
    if Path("/run/systemd/system").is_dir():
        assert outcome.data["service"]["manager"] == "systemd"
    else:
        assert outcome.data["service"]["manager"] == "sysv"
    assert outcome.data["service"]["exists"]
    missing = await run_task("service.status", {"name": "no-such-service"}, HOST, conn)
    assert missing.state == HostState.FAILED and "no service 'no-such-service'" in missing.error


async def test_script_gets_hostile_arguments_literally_and_leaves_nothing(ssh, tmp_path) -> None:
    _, conn = ssh
    script = tmp_path / "show.sh"
    script.write_text('for a in "$@"; do printf "<%s>\\n" "$a"; done\necho "me=$0"\n')
    canary = tmp_path / "pwned"
    args = [f"; touch {canary}", f"$(touch {canary})", f"`touch {canary}`", 'it\'s "quoted"']
    outcome = await run_task("script", {"path": str(script), "args": args}, HOST, conn)
    assert outcome.state == HostState.OK, outcome.error
    lines = outcome.stdout.splitlines()
    assert lines[:4] == [f"<{a}>" for a in args]
    assert not canary.exists()
    uploaded = lines[4].removeprefix("me=")
    assert uploaded.startswith("/tmp/mssp-script.") and not Path(uploaded).parent.exists()


async def test_script_exit_status_fails_the_host(ssh, tmp_path) -> None:
    _, conn = ssh
    script = tmp_path / "fail.sh"
    script.write_text("echo oops >&2\nexit 7\n")
    outcome = await run_task("script", {"path": str(script)}, HOST, conn)
    assert outcome.state == HostState.FAILED and outcome.exit_status == 7
    assert outcome.stderr.strip() == "oops"


async def test_accounts_disable_of_an_absent_user_changes_nothing(ssh) -> None:
    srv, conn = ssh
    outcome = await run_task("accounts.disable", {"user": "mssp-nobody-here"}, HOST, conn)
    assert outcome.state == HostState.OK
    assert not any("usermod" in (c.command or "") for c in srv.commands)


async def test_accounts_check_mode_plans_without_changing(ssh) -> None:
    srv, conn = ssh
    outcome = await run_task(
        "accounts.user", {"user": "mssp-nobody-here", "groups": "users"}, HOST, conn, check=True
    )
    assert outcome.state == HostState.CHANGED
    assert outcome.data["message"] == (
        "would change: create user mssp-nobody-here; add mssp-nobody-here to users"
    )
    assert not any(
        word in (c.command or "") for c in srv.commands for word in ("useradd", "gpasswd")
    )


async def test_refuses_to_disable_the_login_account(ssh) -> None:
    _, conn = ssh
    outcome = await run_task("accounts.disable", {"user": "root"}, HOST, conn)
    assert outcome.state == HostState.FAILED and "mssp logs in with it" in outcome.error


async def test_reboot_over_ssh_waits_for_the_new_boot(tmp_path) -> None:
    """A simulated reboot: the 'reboot' program makes the test stop the server, change the boot
    identity and start it again after a pause; the task must reconnect and see the new boot."""
    boot = tmp_path / "boot_id"
    boot.write_text("boot-1\n")
    marker = tmp_path / "reboot-requested"
    program = tmp_path / "fake-reboot"
    program.write_text(f"#!/bin/sh\ntouch {shlex.quote(str(marker))}\n")
    program.chmod(0o755)

    def wrapper(argv: list[str]) -> list[str]:
        if "random/boot_id" in argv[-1]:  # this host's boot identity lives in a file
            return ["cat", str(boot)]
        return argv

    async with ssh_test_server(command_wrapper=wrapper) as srv:
        host = HostRecord(
            "acme-dental", "hq", "files01", "127.0.0.1", srv.port, "root",
            options={"reboot_command": str(program)},
        )  # fmt: skip
        conn = SSHConnector(ssh_options(srv))

        async def machine() -> None:
            while not marker.exists():
                await asyncio.sleep(0.05)
            await srv.stop()
            boot.write_text("boot-2\n")
            await asyncio.sleep(1.5)
            await srv.start()

        down = asyncio.create_task(machine())
        try:
            outcome = await run_task("reboot", {"timeout": 30}, host, conn)
        finally:
            await down
            await conn.close()
    assert outcome.state == HostState.CHANGED, outcome.error
    assert outcome.data["reboot"]["boot_before"] == "boot-1"
    assert outcome.data["reboot"]["boot_after"] == "boot-2"
    assert outcome.data["reboot"]["reconnects"] >= 1
