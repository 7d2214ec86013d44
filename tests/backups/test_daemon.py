"""The daemon end to end, on this machine: a nightly backup.verify schedule fired by an injected
clock through a real engine (real SSH, real restic, passwords from a real vault), and a local
webhook plus a local SMTP server receive exactly one PROBLEM message when the backup breaks and
one RECOVERED message once it is repaired. (The lab version: tests/integration/test_backups_lab.py.)
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mssp.backups.history import latest_checks
from mssp.config import Settings
from mssp.daemon import NOTIFY_KIND, Daemon, DaemonOptions, notify_targets
from mssp.inventory import HostRecord
from mssp.models.backups import BackupCheck, Schedule
from mssp.notify import Notifier
from mssp.scheduler import add_schedule
from mssp.store.credentials import add_credential
from mssp.store.inventory import create_client
from mssp.store.secrets import VaultSecretSource
from mssp.vault import Vault
from tests.backups.conftest import (
    PASSWORD,
    FakeClock,
    Mailbox,
    Site,
    Webhook,
    real_engine,
    restic,
)

TOKEN = "hook-token-7d1f-SECRET"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def night(daemon: Daemon, clock: FakeClock, when: datetime) -> BackupCheck:
    """Move the clock to ``when``, let the daemon fire, wait for the run and its handling."""
    before = (await Schedule.get(name="nightly-verify")).last_run_id
    clock.set(when)
    daemon.scheduler.wake()
    async with asyncio.timeout(120):
        while (await Schedule.get(name="nightly-verify")).last_run_id in (before, None):
            await asyncio.sleep(0.05)
        await daemon.scheduler.wait_runs()
    row = await Schedule.get(name="nightly-verify")
    assert not row.running
    return await BackupCheck.filter(run_id=row.last_run_id).get()


# SQLite only: the scheduler's claims are tested on both backends in test_scheduler.py, and
# restic's key derivation makes every extra pass here cost ~15 s.
@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_daemon_notifies_once_per_incident_and_once_on_recovery(
    db: Settings, site: Site, webhook: Webhook, mailbox: Mailbox
) -> None:
    vault = Vault.create(db.vault_path, "daemon-test-passphrase")
    await create_client("acme", "Acme", timezone="Europe/Berlin")
    await add_credential(
        vault, client_slug="acme", name="restic-pw", kind="password", secret=PASSWORD
    )
    await add_credential(
        vault, client_slug=None, name="ops-hook", kind=NOTIFY_KIND, secret=webhook.url(TOKEN)
    )
    await add_credential(
        vault, client_slug="acme", name="acme-mail", kind=NOTIFY_KIND, secret=mailbox.url()
    )
    host = HostRecord(
        client="acme",
        site="hq",
        name="fs01",
        address=site.srv.address,
        port=site.srv.port,
        username=site.srv.username,
        tags=frozenset({"backed-up"}),
    )
    params = {"repository": str(site.repo), "password": "restic-pw"}
    clock = FakeClock(utc(2026, 11, 24, 12, 0))
    await add_schedule(
        "nightly-verify",
        cron_text="30 2 * * *",
        task="backup.verify",
        target="tag:backed-up",
        params={
            **params,
            "scratch": str(site.scratch),
            "canary": str(site.canary),
            "subset_nights": 1,
        },
        timezone="Europe/Berlin",
        now=clock(),
    )
    async with real_engine(db, site.srv, [host], secrets=VaultSecretSource(vault)) as engine:
        made = await engine.start_run(
            "backup.run",
            "fs01",
            params={**params, "paths": str(site.data), "canary": str(site.canary)},
        )
        assert (await engine.wait(made)).counts == {"changed": 1}
        targets = await notify_targets(vault)
        assert sorted((t.name, t.client) for t in targets) == [
            ("acme-mail", "acme"),
            ("ops-hook", None),
        ]
        daemon = Daemon(engine, Notifier(targets), clock=clock, options=DaemonOptions(poll=0.05))
        stop = asyncio.Event()
        running = asyncio.create_task(daemon.run(stop))
        try:
            good = await night(daemon, clock, utc(2026, 11, 25, 1, 31))
            assert good.state == "VERIFIED", good.reason
            assert webhook.received == [] and mailbox.messages == []

            damaged = _damage_a_data_pack(site.repo)
            broken = await night(daemon, clock, utc(2026, 11, 26, 1, 31))
            assert broken.state == "CORRUPT", broken.reason
            still = await night(daemon, clock, utc(2026, 11, 27, 1, 31))
            assert still.state == "CORRUPT"

            damaged.repair()
            fixed = await night(daemon, clock, utc(2026, 11, 28, 1, 31))
            assert fixed.state == "VERIFIED", fixed.reason
        finally:
            stop.set()
            await running
    await asyncio.sleep(0.2)  # the SMTP server hands messages over from its own thread
    titles = [m["title"] for m in webhook.received]
    assert titles == [
        "PROBLEM [acme] backup of acme/hq/fs01 is CORRUPT",
        "RECOVERED [acme] backup of acme/hq/fs01 is CORRUPT",
    ]
    assert "reading data subset 1/1 found damaged data" in webhook.received[0]["message"]
    assert len(mailbox.messages) == 2
    assert "PROBLEM" in mailbox.messages[0] and "RECOVERED" in mailbox.messages[1]
    everything = repr(webhook.received) + "".join(mailbox.messages)
    assert PASSWORD not in everything and TOKEN not in everything
    states = [c.state for c in await latest_checks()]
    assert states == ["VERIFIED"]
    assert await BackupCheck.all().count() == 4


class _Damage:
    def __init__(self, path: Path, saved: Path) -> None:
        self.path, self.saved = path, saved

    def repair(self) -> None:
        shutil.copyfile(self.saved, self.path)


def _damage_a_data_pack(repo: Path) -> _Damage:
    import json

    docs = [
        restic(repo, "cat", "index", i).stdout for i in restic(repo, "list", "index").stdout.split()
    ]
    pack = next(
        p["id"]
        for doc in docs
        for p in json.loads(doc)["packs"]
        if all(b["type"] == "data" for b in p["blobs"])
    )
    path = repo / "data" / pack[:2] / pack
    saved = repo.parent / "saved-pack"
    shutil.copyfile(path, saved)
    path.chmod(0o600)
    with path.open("r+b") as f:
        f.seek(100)
        f.write(b"\x00garbage\x00" * 8)
    return _Damage(path, saved)
