"""Backup tasks on a Windows host through WinRM, against the lab's SIMULATED Windows host (a
WS-Management endpoint answering from recorded replies: mssp/lab/winrm_recordings/
backups-windows.json). Not Windows: these tests prove what mssp sends (constant scripts, values as
JSON on stdin, secrets only in the shell environment) and how it reads restic's replies."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from mssp.backups import windows
from mssp.backups.evidence import Access, Evidence
from mssp.connectors.base import ConnectOptions
from mssp.connectors.winrm import WinRMConnector
from mssp.inventory import HostRecord
from mssp.lab.winrm_endpoint import WinRMEndpoint
from mssp.lab.winrm_replies import Recordings, Reply, normalise_script
from mssp.tasks.backups import BackupInitTask, BackupRunTask, BackupVerifyTask
from mssp.tasks.base import Task, TaskContext, TaskResult
from mssp.vault import Secret
from tests.connectors.winrm_fixtures import PASSWORD, USER, running_endpoint

REPO_PASSWORD = "win-repo-pw-Q4r8-not-on-any-command-line"
PARAMS = {"repository": "C:\\Backups\\restic", "password": "acme/restic-pw"}
HOST = HostRecord(client="acme", site="hq", name="win1", address="127.0.0.1", transport="winrm")


@pytest.fixture
def endpoint() -> Iterator[WinRMEndpoint]:
    with running_endpoint(capture=True, allow_unencrypted=True) as (_, served):
        yield served


def replace_reply(endpoint: WinRMEndpoint, name: str, **reply: Any) -> None:
    """Stage another outcome: one recorded reply swapped for this test."""
    endpoint.recordings.scripts[normalise_script(windows.SCRIPTS[name])] = Reply(**reply)


async def run(endpoint: WinRMEndpoint, task: Task) -> TaskResult:
    options = ConnectOptions(
        host=HOST.full_name, address="127.0.0.1", port=endpoint.port, username=USER,
        password=PASSWORD, connect_timeout=3.0, extra={"scheme": "http"},
    )  # fmt: skip
    async with WinRMConnector(options) as conn:
        ctx = TaskContext(host=HOST, conn=conn, secrets={PARAMS["password"]: Secret(REPO_PASSWORD)})
        plan = await task.check(ctx)
        if not plan.needed:
            return TaskResult.ok("nothing to change")
        result = await task.apply(ctx, plan)
        return await task.verify(ctx, plan, result)


def verdict(result: TaskResult) -> tuple[str, str, Evidence]:
    backup = result.data["backup"]
    return backup["state"], backup["reason"], Evidence.from_json(backup["evidence"])


def verify_task(**extra: Any) -> BackupVerifyTask:
    return BackupVerifyTask({**PARAMS, "canary": "C:\\Data\\.mssp-canary", "subset_nights": 1,
                             **extra})  # fmt: skip


def test_recordings_hold_exactly_the_scripts_mssp_sends() -> None:
    recorded = Recordings.load()
    for name, script in windows.SCRIPTS.items():
        assert normalise_script(script) in recorded.scripts, name


async def test_recorded_backup_is_read_and_judged_by_its_age(endpoint: WinRMEndpoint) -> None:
    state, reason, evidence = verdict(await run(endpoint, verify_task()))
    # the recorded snapshot is from 2026-11-25 02:30 CET: everything checks out but its age
    assert evidence.latest is not None and evidence.latest.short_id == "7f3c9a2e"
    assert evidence.check is not None and evidence.check.read_ok
    assert evidence.check.packs_read == 3 and evidence.check.bytes_read == 48245 + 111 + 902
    assert [f.path for f in evidence.restored] == ["/C/Data/report.xlsx", "/C/Data/.mssp-canary"]
    assert all(f.matches for f in evidence.restored)
    assert "unchanged since the snapshot" in evidence.restored[0].expected_from
    fresh_until = datetime(2026, 11, 26, 3, 30, tzinfo=UTC)  # 26 h after the recorded snapshot
    expected = "VERIFIED" if datetime.now(UTC) < fresh_until else "STALE"
    assert state == expected, reason


async def test_fresh_snapshot_is_verified(endpoint: WinRMEndpoint) -> None:
    recorded = json.loads(Recordings.load().scripts[normalise_script(windows.SNAPSHOTS)].stdout)
    recorded[0]["time"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    replace_reply(endpoint, "snapshots", stdout=json.dumps(recorded))
    state, reason, _ = verdict(await run(endpoint, verify_task()))
    assert state == "VERIFIED", reason


async def test_wrong_password_on_windows_is_unverifiable(endpoint: WinRMEndpoint) -> None:
    replace_reply(
        endpoint, "snapshots", stdout="Fatal: wrong password or no key found", exit_code=1
    )
    state, _, evidence = verdict(await run(endpoint, verify_task()))
    assert state == "UNVERIFIABLE" and evidence.access is Access.WRONG_PASSWORD


async def test_damaged_pack_on_windows_is_corrupt(endpoint: WinRMEndpoint) -> None:
    damaged = (
        Recordings.load()
        .scripts[normalise_script(windows.CHECK)]
        .stdout.replace(
            "no errors were found",
            "Pack ID does not match, want 3a111111, got 0b9e2c4f\n"
            "Fatal: repository contains errors",
        )
    )
    replace_reply(endpoint, "check", stdout=damaged, exit_code=1)
    state, reason, evidence = verdict(await run(endpoint, verify_task()))
    assert state == "CORRUPT" and "reading data subset 1/1" in reason
    assert evidence.check is not None and evidence.check.structural_ok


async def test_restic_missing_on_windows_is_unverifiable(endpoint: WinRMEndpoint) -> None:
    replace_reply(endpoint, "snapshots", stdout="restic: not found", exit_code=127)
    state, reason, _ = verdict(await run(endpoint, verify_task()))
    assert state == "UNVERIFIABLE" and "not installed" in reason


async def test_backup_run_and_init_on_windows(endpoint: WinRMEndpoint) -> None:
    made = await run(endpoint, BackupRunTask({**PARAMS, "paths": "C:\\Data",
                                              "canary": "C:\\Data\\.mssp-canary"}))  # fmt: skip
    assert made.status == "changed", made
    assert made.data["snapshot"]["id"] == "7f3c9a2e" and "retention applied" in made.message
    init = await run(endpoint, BackupInitTask(dict(PARAMS)))
    assert init.status == "ok"  # the recorded repository exists
    replace_reply(
        endpoint,
        "config",
        stdout="Fatal: unable to open config file: "
        "CreateFile C:\\Backups\\restic\\config: The system cannot find the file "
        "specified.\nIs there a repository at the following location?",
        exit_code=1,
    )
    created = await run(endpoint, BackupInitTask(dict(PARAMS)))
    assert created.status == "changed" and created.data["repository_id"] == "5d2c1a0f9e"


async def test_windows_values_travel_as_data_and_the_password_only_in_the_environment(
    endpoint: WinRMEndpoint,
) -> None:
    hostile = "C:\\Data\\x'; Remove-Item -Recurse -Force \\; '"  # a legal Windows file name
    made = await run(endpoint, BackupRunTask({**PARAMS, "paths": [hostile]}))
    # the simulated host answers only the exact constant scripts: a spliced value would have
    # produced an unknown script and "is not recognized"
    assert made.status == "changed", made
    await run(endpoint, verify_task())
    scripts = []
    for message in endpoint.plaintext:
        for encoded in re.findall(rb"-EncodedCommand\s+([A-Za-z0-9+/=]+)", message):
            scripts.append(base64.b64decode(encoded).decode("utf-16-le"))
        if REPO_PASSWORD.encode() in message:
            assert b"rsp:Environment" in message and b"rsp:CommandLine" not in message
    assert scripts and all(normalise_script(t) in KNOWN for t in scripts)
    assert not any("Remove-Item -Recurse -Force \\" in t or REPO_PASSWORD in t for t in scripts)


KNOWN = {normalise_script(t) for t in windows.SCRIPTS.values()}


@pytest.mark.parametrize(
    ("path", "converted"),
    [("C:\\Data\\x.txt", "/C/Data/x.txt"), ("d:\\", "/D"), ("/srv/x", "/srv/x")],
)
def test_restic_path_form(path: str, converted: str) -> None:
    assert windows.restic_path(path) == converted
