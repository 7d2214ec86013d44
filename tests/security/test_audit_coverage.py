"""Runs, host-key pins and inventory imports are in the audit log, and refused when it cannot be
written.

A run writes one intent entry per client it touches before anything is created or sent, and
that client's outcome (with its host counts) before the run shows as ended; retries, resumes and
cancels likewise. Host-key pins and imports are audited in their own transaction: both or
neither. The audit is broken with a trigger on the audit table (SQLite and PostgreSQL), as a
full disk would break it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mssp import audit
from mssp.connectors.base import HostKeyInfo
from mssp.errors import AuditError
from mssp.importers import read_inventory
from mssp.importers.apply import apply_plan, preview
from mssp.inventory import HostRecord
from mssp.models.inventory import Client, Host, HostKey
from mssp.models.runs import HostRun, Run
from mssp.store.hostkeys import DbHostKeyStore, fingerprint
from mssp.store.inventory import create_client, create_host, create_site
from tests.engine.conftest import engine_for, make_hosts
from tests.engine.test_engine_recovery import dead_run
from tests.security.dbfaults import refusing
from tests.sshserver import SSHTestServer

CSV = Path(__file__).resolve().parents[1] / "importers" / "fixtures" / "clients.csv"


def broken_audit():  # type: ignore[no-untyped-def]
    return refusing("audit_entry", "INSERT")


async def _runs_of(action: str) -> list[audit.Entry]:
    return [e for e in await audit.entries() if e.action == action]


def _detail(entry: audit.Entry) -> dict:
    return json.loads(entry.detail)


async def test_a_run_is_audited_per_client_before_it_starts_and_when_it_ends(
    db, ssh_server: SSHTestServer
) -> None:
    hosts = make_hosts(ssh_server, 3, clients=("acme", "bravo"))
    async with engine_for(db, ssh_server, hosts) as (engine, _):
        run_id = await engine.start_run("command", "all", params={"cmd": "true"})
        await engine.wait(run_id)
    entries = await _runs_of("run.start")
    intents = [e for e in entries if e.result == "intent"]
    outcomes = [e for e in entries if e.result != "intent"]
    assert [(e.client, e.target) for e in intents] == [("acme", "all"), ("bravo", "all")]
    acme = _detail(intents[0])
    assert acme["task"] == "command" and acme["params"]["cmd"] == "true"
    assert acme["hosts"] == ["acme/hq/h000", "acme/hq/h002"] and acme["host_count"] == 2
    by_client = {e.client: e for e in outcomes}
    assert by_client["acme"].intent_seq == intents[0].seq
    assert by_client["bravo"].intent_seq == intents[1].seq
    assert by_client["acme"].result == "finished"
    assert _detail(by_client["acme"]) == {"run": run_id, "counts": {"ok": 2}}
    assert _detail(by_client["bravo"]) == {"run": run_id, "counts": {"ok": 1}}
    assert max(e.seq for e in intents) < min(e.seq for e in outcomes)
    assert (await audit.verify()).ok


async def test_a_run_is_refused_when_the_audit_cannot_be_written(
    db, ssh_server: SSHTestServer, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    hosts = make_hosts(ssh_server, 2)
    async with engine_for(db, ssh_server, hosts) as (engine, _):
        async with broken_audit():
            with pytest.raises(AuditError):
                await engine.start_run("command", "all", params={"cmd": f"touch {marker}"})
        await engine.wait_idle()
    assert await Run.all().count() == 0 and await HostRun.all().count() == 0
    assert not marker.exists()  # nothing was sent to any host


async def test_retries_resumes_and_cancels_are_audited(db, ssh_server: SSHTestServer) -> None:
    from mssp.engine.recovery import process_identity

    hosts = make_hosts(ssh_server, 3)
    machine = process_identity().rsplit(":", 2)[0]
    dead = await dead_run(hosts, owner=f"{machine}:999999999:5")
    async with engine_for(db, ssh_server, hosts) as (engine, _):
        await engine.resume(dead)
        await engine.wait(dead)
        first = await engine.start_run("command", "all", params={"cmd": "exit 3"})
        await engine.wait(first)
        retried = await engine.retry(first, which=["failed"])
        await engine.wait(retried)
        slow = await engine.start_run("command", "all", params={"cmd": "sleep 30"})
        await engine.cancel(slow, immediate=True)
        await engine.wait(slow)
    reconciled = await _runs_of("run.reconciled")
    assert [(_detail(e)["run"], e.result) for e in reconciled] == [(dead, "interrupted")]
    resumed = await _runs_of("run.resume")
    assert [e.result for e in resumed] == ["intent", "finished"]
    assert _detail(resumed[0])["run"] == dead and _detail(resumed[1])["run"] == dead
    retry = await _runs_of("run.retry")
    assert [e.result for e in retry] == ["intent", "finished"]
    assert _detail(retry[0])["retry_of"] == first
    assert _detail(retry[1]) == {"run": retried, "counts": {"failed": 3}}
    cancels = await _runs_of("run.cancel")
    assert [(_detail(e)["run"], _detail(e)["immediate"]) for e in cancels] == [(slow, True)]
    ends = {_detail(e)["run"]: e.result for e in await _runs_of("run.start") if e.intent_seq}
    assert ends == {first: "finished", slow: "cancelled"}
    assert (await audit.verify()).ok


async def test_a_cancel_is_refused_when_the_audit_cannot_be_written(
    db, ssh_server: SSHTestServer
) -> None:
    hosts = make_hosts(ssh_server, 1)
    async with engine_for(db, ssh_server, hosts) as (engine, _):
        run_id = await engine.start_run("command", "all", params={"cmd": "sleep 1"})
        async with broken_audit():
            with pytest.raises(AuditError):
                await engine.cancel(run_id)
        summary = await engine.wait(run_id)
    assert summary.state == "finished" and summary.counts == {"ok": 1}


async def _stored_host() -> HostRecord:
    await create_client("acme", "Acme")
    await create_site("acme", "hq")
    return await create_host("acme", "hq", "web", address="192.0.2.7")


def _key() -> HostKeyInfo:
    import asyncssh

    public = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    return HostKeyInfo("ssh-ed25519", public, fingerprint(public))


async def test_host_key_pins_and_re_pins_are_audited(db) -> None:
    host = await _stored_host()
    store = DbHostKeyStore()
    first, second = _key(), _key()
    await store.pin(host, first)
    await store.pin(host, first)  # already pinned: nothing changes, nothing is logged
    await store.pin(host, second)
    await store.forget(host)
    entries = [e for e in await audit.entries() if e.action.startswith("hostkey.")]
    assert [(e.action, e.client, e.target) for e in entries] == [
        ("hostkey.pin", "acme", "acme/hq/web"),
        ("hostkey.repin", "acme", "acme/hq/web"),
        ("hostkey.forget", "acme", "acme/hq/web"),
    ]
    assert _detail(entries[0])["fingerprint"] == first.fingerprint
    assert _detail(entries[1])["already_trusted"] == [first.fingerprint]
    assert _detail(entries[2])["fingerprints"] == sorted([first.fingerprint, second.fingerprint])


async def test_a_pin_is_refused_when_the_audit_cannot_be_written(db) -> None:
    host = await _stored_host()
    async with broken_audit():
        with pytest.raises(AuditError):
            await DbHostKeyStore().pin(host, _key())
    assert await HostKey.all().count() == 0


async def test_a_first_connection_that_pins_a_key_is_audited(db, ssh_server) -> None:
    """accept-new through the real connection manager: the pin it makes is in the log."""
    from mssp.connections import ConnectionManager
    from tests.engine.conftest import ServerCredentials

    await create_client("acme", "Acme")
    await create_site("acme", "hq")
    host = await create_host(
        "acme",
        "hq",
        "srv",
        address=ssh_server.address,
        port=ssh_server.port,
        username=ssh_server.username,
    )
    manager = ConnectionManager(
        db, credentials=ServerCredentials(ssh_server), host_keys=DbHostKeyStore()
    )
    try:
        async with manager.connection(host) as conn:
            await conn.run("true")
    finally:
        await manager.aclose()
    [entry] = [e for e in await audit.entries() if e.action == "hostkey.pin"]
    assert entry.target == "acme/hq/srv"
    assert _detail(entry)["fingerprint"] == fingerprint(ssh_server.host_key_public)


async def test_inventory_imports_are_audited_per_client(db) -> None:
    result = await apply_plan(await preview(read_inventory(CSV)))
    entries = await _runs_of("inventory.import")
    assert [e.client for e in entries] == sorted({e.client for e in entries})
    assert len(entries) == await Client.all().count() >= 2
    total = sum(_detail(e)["created_count"]["host"] for e in entries)
    assert total == result.plan.count("create", "host") == await Host.all().count()
    assert all(e.target == str(CSV) or e.target.endswith("clients.csv") for e in entries)
    text = " ".join(e.detail for e in entries)
    assert "192.0.2.10" not in text  # names and counts only, never the file's fields


async def test_an_import_is_refused_when_the_audit_cannot_be_written(db) -> None:
    plan = await preview(read_inventory(CSV))
    async with broken_audit():
        with pytest.raises(AuditError):
            await apply_plan(plan)
    assert await Client.all().count() == 0 and await Host.all().count() == 0


def test_schedule_changes_are_audited(tmp_path, monkeypatch) -> None:
    """schedule add / disable / enable / remove each write an intent and an outcome entry."""
    import json

    from click.testing import CliRunner

    from mssp.cli import cli

    monkeypatch.setenv("MSSP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MSSP_VAULT_PASSPHRASE", "schedule audit passphrase")
    runner = CliRunner()
    assert runner.invoke(cli, ["init"]).exit_code == 0
    steps = [
        [
            "schedule",
            "add",
            "nightly",
            "--cron",
            "30 2 * * *",
            "--task",
            "facts",
            "--target",
            "all",
            "--timezone",
            "UTC",
        ],
        ["schedule", "disable", "nightly"],
        ["schedule", "enable", "nightly"],
        ["schedule", "remove", "nightly"],
    ]
    for step in steps:
        result = runner.invoke(cli, step)
        assert result.exit_code == 0, result.output
    entries = json.loads(runner.invoke(cli, ["audit", "list", "--json"]).output)
    pairs = [(e["action"], e["result"]) for e in entries if e["action"].startswith("schedule.")]
    assert pairs == [
        ("schedule.add", "intent"),
        ("schedule.add", "ok"),
        ("schedule.disable", "intent"),
        ("schedule.disable", "ok"),
        ("schedule.enable", "intent"),
        ("schedule.enable", "ok"),
        ("schedule.remove", "intent"),
        ("schedule.remove", "ok"),
    ]
    assert all(e["target"] == "nightly" for e in entries if e["action"].startswith("schedule."))
