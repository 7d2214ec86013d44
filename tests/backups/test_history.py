"""Verification history: every finished backup.verify host run becomes one BackupCheck, once; a
host that cannot be reached is recorded UNVERIFIABLE, never skipped."""

from __future__ import annotations

from mssp.backups.history import host_history, latest_checks, record_run, sync_checks
from mssp.config import Settings
from mssp.inventory import HostRecord
from mssp.models.backups import BackupCheck
from tests.backups.conftest import real_engine
from tests.sshserver import ssh_test_server


async def test_unreachable_host_is_recorded_unverifiable_once(db: Settings) -> None:
    dead = HostRecord(client="acme", site="hq", name="gone", address="127.0.0.1", port=1)
    async with ssh_test_server() as srv, real_engine(db, srv, [dead]) as engine:
        run_id = await engine.start_run(
            "backup.verify", "gone", params={"repository": "/srv/r", "password": "restic-pw"}
        )
        await engine.wait(run_id)
    made = await record_run(run_id)
    assert [(c.host, c.state) for c in made] == [("acme/hq/gone", "UNVERIFIABLE")]
    assert "could not be reached" in made[0].reason
    assert await record_run(run_id) == [] and await sync_checks() == []
    assert await BackupCheck.all().count() == 1
    assert [c.state for c in await latest_checks("acme")] == ["UNVERIFIABLE"]
    assert len(await host_history("acme/hq/gone")) == 1


async def test_runs_of_other_tasks_are_not_backup_checks(db: Settings) -> None:
    async with ssh_test_server() as srv:
        host = HostRecord(client="acme", site="hq", name="h", address=srv.address,
                          port=srv.port, username=srv.username)  # fmt: skip
        async with real_engine(db, srv, [host]) as engine:
            run_id = await engine.start_run("command", "h", params={"cmd": "true"})
            await engine.wait(run_id)
    assert await record_run(run_id) == [] and await sync_checks() == []
