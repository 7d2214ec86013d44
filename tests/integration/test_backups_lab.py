"""Backups on the lab's real hosts: real restic repositories inside lab hosts, verified through
mssp's own engine, inventory and vault; the nightly daemon notifying a local webhook and a local
SMTP server. Every verdict here comes from restic's real behaviour; nothing is simulated."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

import mssp.store.credentials as credentials
from mssp import db as mssp_db
from mssp.backups.evidence import Access, Evidence
from mssp.backups.history import record_run
from mssp.connections import ConnectionManager
from mssp.daemon import NOTIFY_KIND, Daemon, DaemonOptions, notify_targets
from mssp.engine import Engine
from mssp.events import EventBus
from mssp.models.backups import BackupCheck, Schedule
from mssp.notify import Notifier
from mssp.scheduler import add_schedule, remove_schedule
from mssp.store.credentials import VaultCredentialResolver, add_credential, remove_credential
from mssp.store.hostkeys import DbHostKeyStore
from mssp.store.secrets import VaultSecretSource
from mssp.vault import unlock_from_settings
from tests.backups.conftest import FakeClock
from tests.integration.conftest import LabHandle, run_mssp
from tests.receivers import Mailbox, Webhook

REPO = "/var/backups/mssp-restic"
DATA = "/srv/mssp-data"
CANARY = f"{DATA}/.mssp-canary"
SETUP = (
    f"set -e; rm -rf {REPO} {DATA}; mkdir -p {DATA}/docs; "
    f"head -c 1500000 /dev/urandom > {DATA}/db.bin; "
    f"head -c 200000 /dev/urandom > {DATA}/docs/invoice.pdf; "
    f'for i in 1 2 3; do echo "note $i" > {DATA}/docs/note$i.txt; done'
)
CLEANUP = f"rm -rf {REPO} {REPO}.gone {DATA} /root/mssp-saved-pack /var/tmp/mssp-verify.*"


@dataclass
class Bench:
    lab: LabHandle
    settings: Any
    vault: Any
    engine: Engine
    client: str
    password_ref: str
    wrong_ref: str

    async def run(self, task: str, hosts: list[Any], **params: Any) -> int:
        target = ",".join(h.full_name for h in hosts)
        run_id = await self.engine.start_run(task, target, params=params)
        await self.engine.wait(run_id)
        return run_id

    async def shell(self, host: Any, command: str) -> str:
        async with self.lab.connect(host) as conn:
            result = await conn.run(command, timeout=60)
        assert result.exit_status == 0, result.stderr
        return str(result.stdout)


@pytest.fixture(autouse=True)
def notify_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    # Until mssp/store/names.py lists "notify-url" in CREDENTIAL_KINDS (asked of its owner).
    if NOTIFY_KIND not in credentials.CREDENTIAL_KINDS:
        monkeypatch.setattr(
            credentials, "CREDENTIAL_KINDS", (*credentials.CREDENTIAL_KINDS, NOTIFY_KIND)
        )


@contextlib.asynccontextmanager
async def bench(lab: LabHandle, lab_settings: Any, hosts: list[Any]) -> AsyncIterator[Bench]:
    """The lab's database, vault and a real engine; a repository password credential; scratch
    data on the hosts, all removed at the end."""
    vault = unlock_from_settings(lab_settings)
    client = hosts[0].client
    suffix = secrets.token_hex(3)
    names = (f"restic-pw-{suffix}", f"restic-wrong-{suffix}")
    async with mssp_db.database(lab_settings):
        await add_credential(
            vault,
            client_slug=client,
            name=names[0],
            kind="password",
            secret=secrets.token_urlsafe(24),
        )
        await add_credential(
            vault,
            client_slug=client,
            name=names[1],
            kind="password",
            secret=secrets.token_urlsafe(24),
        )
        manager = ConnectionManager(
            lab_settings, credentials=VaultCredentialResolver(vault), host_keys=DbHostKeyStore()
        )
        engine = Engine(
            lab_settings, connections=manager, bus=EventBus(), secrets=VaultSecretSource(vault)
        )
        b = Bench(lab, lab_settings, vault, engine, client, names[0], names[1])
        try:
            for h in hosts:
                await b.shell(h, SETUP)
            await engine.start()
            yield b
        finally:
            await engine.aclose()
            await manager.aclose()
            for h in hosts:
                await b.shell(h, CLEANUP)
            for name in names:
                await remove_credential(f"{client}/{name}")


async def checks_of(run_id: int) -> dict[str, BackupCheck]:
    await record_run(run_id)
    return {c.host_name: c for c in await BackupCheck.filter(run_id=run_id)}


async def test_lab_verdicts_with_their_evidence(lab: LabHandle, lab_settings: Any) -> None:
    fresh, old, damaged, missing = lab.hosts(reach="direct")[:4]
    everyone = [fresh, old, damaged, missing]
    async with bench(lab, lab_settings, everyone) as b:
        common = {"repository": REPO, "password": b.password_ref}
        await b.run("backup.init", everyone, **common)
        backup = {**common, "paths": DATA, "canary": CANARY}
        await b.run("backup.run", [fresh, damaged, missing], **backup)
        await b.run("backup.run", [old], **backup, time="2026-01-02 03:04:05")

        # damage the biggest pack (data only: the random db.bin) of one host's repository
        pack = (await b.shell(damaged, f"ls -S {REPO}/data/*/* | head -1")).strip()
        await b.shell(
            damaged,
            f"cp {pack} /root/mssp-saved-pack; chmod u+w {pack}; "
            f"printf 'garbage-garbage!' | dd of={pack} bs=1 seek=300 "
            "conv=notrunc 2>/dev/null",
        )
        group = f"{int(pack.rsplit('/', 1)[1][:2], 16) % 7 + 1}/7"
        await b.shell(missing, f"mv {REPO} {REPO}.gone")

        verify = {**common, "canary": CANARY}
        run_all = await b.run("backup.verify", [fresh, old, missing], **verify)
        run_damaged = await b.run("backup.verify", [damaged], **verify, subset=group)
        run_wrong = await b.run("backup.verify", [fresh], **{**verify, "password": b.wrong_ref})
        checks = {**await checks_of(run_all), **await checks_of(run_damaged)}
        wrong = (await checks_of(run_wrong))[fresh.full_name]
        leftovers = [
            await b.shell(h, "ls -d /var/tmp/mssp-verify.* 2>/dev/null || true") for h in everyone
        ]
        # a verification run by hand (`mssp run`) lands in the same history
        by_hand = run_mssp(lab.env, "run", "backup.verify", fresh.full_name, "--param",
                           f"repository={REPO}", "--param", f"password={b.password_ref}",
                           "--param", f"canary={CANARY}", "--json")  # fmt: skip
        status = run_mssp(lab.env, "backups", "status", "--json")

    good = checks[fresh.full_name]
    assert good.state == "VERIFIED", good.reason
    evidence = Evidence.from_json(good.evidence)
    assert evidence.latest is not None and evidence.check is not None
    assert evidence.check.bytes_read > 0 and evidence.check.packs_read > 0
    assert {f.role for f in evidence.restored} == {"sample", "canary"}
    assert all(f.matches and len(f.sha256) == 64 for f in evidence.restored)
    assert evidence.durations["check"] > 0 and evidence.scratch_removed

    stale = checks[old.full_name]
    assert stale.state == "STALE" and "2026-01-02" in stale.reason

    corrupt = checks[damaged.full_name]
    assert corrupt.state == "CORRUPT", corrupt.reason
    check = Evidence.from_json(corrupt.evidence).check
    assert check is not None and check.subset == group
    assert check.structural_ok and not check.read_ok  # found by reading, not by guessing
    assert any("does not match" in e or "pack" in e.lower() for e in check.errors)

    gone = checks[missing.full_name]
    assert gone.state == "UNVERIFIABLE" and "no restic repository" in gone.reason
    assert Evidence.from_json(gone.evidence).access is Access.NO_REPOSITORY
    assert wrong.state == "UNVERIFIABLE" and "password is wrong" in wrong.reason

    assert leftovers == ["", "", "", ""]  # scratch restores removed on every host
    assert by_hand.returncode == 0, by_hand.stdout + by_hand.stderr
    assert status.returncode == 0, status.stderr
    shown = {c["host"]: c for c in json.loads(status.stdout)}
    assert shown[old.full_name]["state"] == "STALE"
    assert shown[damaged.full_name]["state"] == "CORRUPT"
    assert shown[fresh.full_name]["state"] == "VERIFIED"  # the run by hand, newest
    assert shown[fresh.full_name]["run_id"] not in (run_all, run_wrong)


async def test_lab_daemon_notifies_a_broken_backup_once_and_its_recovery(
    lab: LabHandle,
    lab_settings: Any,
    webhook: Webhook,
    mailbox: Mailbox,
) -> None:
    host = lab.hosts(reach="direct")[4]
    token = secrets.token_hex(8)
    async with bench(lab, lab_settings, [host]) as b:
        suffix = secrets.token_hex(3)
        targets = [f"hook-{suffix}", f"mail-{suffix}"]
        await add_credential(
            b.vault, client_slug=None, name=targets[0], kind=NOTIFY_KIND, secret=webhook.url(token)
        )
        await add_credential(
            b.vault, client_slug=b.client, name=targets[1], kind=NOTIFY_KIND, secret=mailbox.url()
        )
        params = {"repository": REPO, "password": b.password_ref}
        await b.run("backup.init", [host], **params)
        await b.run("backup.run", [host], **params, paths=DATA, canary=CANARY)
        clock = FakeClock(datetime(2026, 11, 24, 12, 0, tzinfo=UTC))
        name = f"nightly-verify-{suffix}"
        await add_schedule(
            name,
            cron_text="30 2 * * *",
            task="backup.verify",
            target=host.full_name,
            params={**params, "canary": CANARY, "subset_nights": 1},
            now=clock(),
        )
        mine = [t for t in await notify_targets(b.vault) if t.name in targets]
        daemon = Daemon(b.engine, Notifier(mine), clock=clock, options=DaemonOptions(poll=0.05))
        stop = asyncio.Event()
        running = asyncio.create_task(daemon.scheduler.run(stop, max_sleep=0.05))
        states = []
        try:
            for day, action in ((25, None), (26, "break"), (27, None), (28, "fix")):
                if action == "break":
                    pack = (await b.shell(host, f"ls -S {REPO}/data/*/* | head -1")).strip()
                    await b.shell(
                        host,
                        f"cp {pack} /root/mssp-saved-pack; chmod u+w {pack}; "
                        f"printf 'garbage!' | dd of={pack} bs=1 seek=300 "
                        "conv=notrunc 2>/dev/null",
                    )
                if action == "fix":
                    await b.shell(host, f"cp /root/mssp-saved-pack {pack}")
                before = (await Schedule.get(name=name)).last_run_id
                clock.set(datetime(2026, 11, day, 2, 31, tzinfo=UTC))
                daemon.scheduler.wake()
                async with asyncio.timeout(180):
                    while (await Schedule.get(name=name)).last_run_id in (before, None):
                        await asyncio.sleep(0.05)
                    await daemon.scheduler.wait_runs()
                run_id = (await Schedule.get(name=name)).last_run_id
                states.append((await BackupCheck.get(run_id=run_id)).state)
        finally:
            stop.set()
            await running
            await remove_schedule(name)
            for target in targets:
                await remove_credential(
                    target if target.startswith("hook") else f"{b.client}/{target}"
                )
    await asyncio.sleep(0.3)
    assert states == ["VERIFIED", "CORRUPT", "CORRUPT", "VERIFIED"]
    titles = [m["title"] for m in webhook.received]
    assert titles == [
        f"PROBLEM [{host.client}] backup of {host.full_name} is CORRUPT",
        f"RECOVERED [{host.client}] backup of {host.full_name} is CORRUPT",
    ]
    assert len(mailbox.messages) == 2
    assert "PROBLEM" in mailbox.messages[0] and "RECOVERED" in mailbox.messages[1]
    assert token not in repr(webhook.received) + "".join(mailbox.messages)
