"""Windows tasks through pywinrm against the simulated WS-Management endpoint (NOT Windows).

The endpoint is the lab's recorded Windows host with a state model (tests/tasks/winhost.py):
facts, Windows Update with a reboot that really drops the connection, local accounts, services.
"""

from __future__ import annotations

import json

import pytest

from mssp.connectors.winrm import WinRMConnector
from mssp.engine.state import HostState
from mssp.inventory import HostRecord
from mssp.lab.winrm_replies import Recordings, normalise_script
from mssp.tasks.windows import SCRIPTS
from mssp.vault import Secret
from tests.connectors.winrm_fixtures import USER
from tests.tasks.helpers import run_task
from tests.tasks.winhost import stateful_windows_host, windows_options

HOST = HostRecord("acme-dental", "hq", "win01", "127.0.0.1", 5985, USER, "winrm")


@pytest.fixture
def win():
    with stateful_windows_host() as served:
        yield served


@pytest.fixture
async def conn(win):
    _, host = win
    connector = WinRMConnector(windows_options(host))
    await connector.connect()
    yield connector
    await connector.close()


def test_every_task_script_has_a_recording_for_the_lab_host() -> None:
    recorded = Recordings.load().scripts
    for name, script in SCRIPTS.items():
        assert normalise_script(script) in recorded, name


async def test_facts_of_a_windows_host(win, conn) -> None:
    outcome = await run_task("facts", {}, HOST, conn)
    assert outcome.state == HostState.OK, outcome.error
    facts = outcome.data["facts"]
    assert facts["os"]["name"] == "Microsoft Windows Server 2022 Standard"
    assert facts["updates"] == {
        "pending": 3,
        "security": 1,
        "packages": ["KB2267602", "KB5046540", "KB5046616"],
        "security_packages": ["KB5046616"],
    }
    assert {u["name"]: u["admin"] for u in facts["users"]}["Administrator"] is True


async def test_windows_update_with_reboot_rides_out_the_dropped_connection(win, conn) -> None:
    runner, host = win
    check = await run_task("updates.check", {}, HOST, conn)
    assert check.state == HostState.OK and len(check.data["pending"]) == 3
    progress: list[str] = []
    outcome = await run_task(
        "updates.apply",
        {"security_only": True, "reboot": "if-required", "reboot_timeout": 60},
        HOST,
        conn,
        progress=progress,
    )
    assert outcome.state == HostState.CHANGED, outcome.error
    data = outcome.data
    assert data["installed"] == ["KB5046616"] and data["new_hotfixes"] == ["KB5046616"]
    assert data["reboot"]["done"] and not data["reboot"]["pending"]
    assert data["reboot"]["reconnects"] >= 1  # the connection really dropped and came back
    assert runner.do(lambda: host.reboots) == 1
    assert "rebooting" in progress and "back after reboot" in progress
    again = await run_task("updates.check", {"security_only": True}, HOST, conn)
    assert again.state == HostState.OK and again.data["pending"] == []
    # the non-security ones are still there, untouched
    rest = await run_task("updates.check", {}, HOST, conn)
    assert [p["name"] for p in rest.data["pending"]] == ["KB5046540", "KB2267602"]


async def test_windows_update_reboot_never_leaves_it_pending(win, conn) -> None:
    runner, host = win
    outcome = await run_task(
        "updates.apply", {"exclude": ["KB2267602"], "reboot": "never"}, HOST, conn
    )
    assert outcome.state == HostState.CHANGED, outcome.error
    assert sorted(outcome.data["installed"]) == ["KB5046540", "KB5046616"]
    assert outcome.data["reboot"] == {
        "policy": "never", "required": True, "done": False, "pending": True
    }  # fmt: skip
    assert runner.do(lambda: host.reboots) == 0


async def test_windows_update_check_mode_changes_nothing(win, conn) -> None:
    runner, host = win
    before = runner.do(lambda: (list(host.pending), dict(host.hotfixes), host.boot_time))
    outcome = await run_task("updates.apply", {"reboot": "always"}, HOST, conn, check=True)
    assert outcome.state == HostState.CHANGED and "install 3 updates" in outcome.data["message"]
    after = runner.do(lambda: (list(host.pending), dict(host.hotfixes), host.boot_time))
    assert before == after
    assert "wu_install" not in runner.do(lambda: list(host.script_runs))


async def test_windows_reboot_task_waits_and_reports(win, conn) -> None:
    runner, host = win
    old_boot = runner.do(lambda: host.boot_time)
    outcome = await run_task("reboot", {"timeout": 60}, HOST, conn)
    assert outcome.state == HostState.CHANGED, outcome.error
    assert outcome.data["reboot"]["boot_before"] == old_boot
    assert outcome.data["reboot"]["boot_after"] == runner.do(lambda: host.boot_time) != old_boot


async def test_windows_reboot_that_never_returns_fails_clearly(win, conn) -> None:
    runner, host = win
    runner.do(lambda: setattr(host, "reboot_downtime", 30))
    outcome = await run_task("reboot", {"timeout": 4}, HOST, conn)
    assert outcome.state == HostState.FAILED
    assert "did not come back from the reboot within 4s" in outcome.error


async def test_windows_accounts_lifecycle_and_second_run_unchanged(win, conn) -> None:
    runner, host = win
    secret = Secret("S3cure-Pa55!") if callable(Secret) else "S3cure-Pa55!"
    params = {"user": "jdoe", "password_secret": "jdoe-pw", "admin": "yes", "comment": "Jane Doe"}
    secrets = {"credential:jdoe-pw": secret}
    created = await run_task("accounts.user", params, HOST, conn, secrets=secrets)
    assert created.state == HostState.CHANGED, created.error
    state = runner.do(lambda: host.accounts["jdoe"])
    assert state["enabled"] and "Administrators" in state["groups"]
    assert runner.do(lambda: host.passwords_seen) == ["S3cure-Pa55!"]
    assert "S3cure-Pa55!" not in repr(created)
    assert "S3cure-Pa55!" not in " ".join(runner.do(lambda: list(host.command_lines)))
    again = await run_task("accounts.user", params, HOST, conn, secrets=secrets)
    assert again.state == HostState.OK and again.data.get("message") == "nothing to change"
    disabled = await run_task("accounts.disable", {"user": "jdoe"}, HOST, conn)
    assert disabled.state == HostState.CHANGED and not runner.do(
        lambda: host.accounts["jdoe"]["enabled"]
    )
    assert (await run_task("accounts.disable", {"user": "jdoe"}, HOST, conn)).state == HostState.OK
    removed = await run_task("accounts.remove", {"user": "jdoe"}, HOST, conn)
    assert removed.state == HostState.CHANGED and "jdoe" not in runner.do(
        lambda: list(host.accounts)
    )
    absent = await run_task("accounts.disable", {"user": "jdoe"}, HOST, conn)
    assert absent.state == HostState.OK


async def test_windows_refuses_to_disable_its_own_login(win, conn) -> None:
    outcome = await run_task("accounts.disable", {"user": USER}, HOST, conn)
    assert outcome.state == HostState.FAILED and "mssp logs in with it" in outcome.error


async def test_windows_services(win, conn) -> None:
    status = await run_task("service.status", {"name": "Spooler"}, HOST, conn)
    assert status.state == HostState.OK and status.data["service"]["active"]
    missing = await run_task("service.status", {"name": "NoSuchSvc"}, HOST, conn)
    assert missing.state == HostState.FAILED
    restarted = await run_task("service.restart", {"name": "Spooler"}, HOST, conn)
    assert restarted.state == HostState.CHANGED, restarted.error


async def test_powershell_subexpression_in_a_user_name_never_reaches_the_host(win, conn) -> None:
    runner, host = win
    seen = runner.do(lambda: host.requests_seen)
    outcome = None
    with pytest.raises(Exception, match="not a valid user name"):
        outcome = await run_task("accounts.disable", {"user": "$(Stop-Computer)"}, HOST, conn)
    assert outcome is None and runner.do(lambda: host.requests_seen) == seen


async def test_windows_script_upload_arguments_as_data_and_cleanup(win, conn, tmp_path) -> None:
    runner, host = win
    script = tmp_path / "inventory.ps1"
    script.write_text('param($a, $b)\nWrite-Output "$a / $b"\n')
    args = ["$(Stop-Computer -Force)", "@(Remove-Item C:\\ -Recurse)", "it's; `n"]
    outcome = await run_task("script", {"path": str(script), "args": args}, HOST, conn)
    assert outcome.state == HostState.OK, outcome.error
    reply = json.loads(outcome.stdout)
    assert reply == {"script": script.read_text(), "args": args}
    assert runner.do(lambda: dict(host.fs.files)) == {}  # the upload is gone
    lines = runner.do(lambda: list(host.command_lines))
    assert not any("Stop-Computer" in line for line in lines)  # arguments only ever on stdin
