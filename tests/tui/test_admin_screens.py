"""Backups, schedules and audit screens and agent presence, on the real store (SQLite and
PostgreSQL), driven by Pilot from the dashboard's keys, the `:` line and the command palette."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from mssp import audit
from mssp.config import Settings
from mssp.events import EventBus
from mssp.models.audit import AuditEntry
from mssp.models.backups import BackupCheck, Schedule
from mssp.scheduler import add_schedule
from mssp.store import inventory as store
from tests.tui.helpers import SIZE, screen_text, wait_for
from tui.app import MsspApp
from tui.screens.audit import AuditScreen
from tui.screens.backups import BackupHistoryScreen, BackupsScreen
from tui.screens.dashboard import DashboardScreen
from tui.screens.dialogs import ConfirmDialog
from tui.screens.help import HelpScreen
from tui.screens.run_launcher import RunLauncherScreen
from tui.screens.schedules import SchedulesScreen
from tui.services import Services
from tui.store_source import StoreSource

NOW = datetime.now(UTC)
EVIDENCE = {
    "repository": "sftp:backup@nas:/srv/restic/web0",
    "snapshot_host": "web0",
    "access": "ok",
    "snapshot_count": 14,
    "latest": {
        "id": "a" * 64,
        "short_id": "a1b2c3d4",
        "time": (NOW - timedelta(hours=5)).isoformat(),
        "hostname": "web0",
    },
    "check": {
        "exit_status": 0,
        "structural_ok": True,
        "read_ok": True,
        "subset": "3/20",
        "packs_read": 5,
        "bytes_read": 3 * 1024 * 1024,
    },
    "restored": [
        {"path": "/etc/hostname", "role": "sample", "sha256": "ab", "expected_sha256": "ab"},
        {"path": "/srv/.canary", "role": "canary", "sha256": "cd", "expected_sha256": "cd"},
    ],
}


async def fleet() -> None:
    await store.create_client("acme", "Acme Ltd")
    await store.create_site("acme", "hq", "Head office")
    await store.create_site("acme", "branch", "Branch", reach="relay")
    for name in ("web0", "web1", "db0"):
        await store.create_host("acme", "hq", name, address="127.0.0.1")


async def check(host: str, state: str, reason: str, hours_ago: float, **kw) -> None:
    await BackupCheck.create(
        host_name=host,
        client_slug="acme",
        state=state,
        reason=reason,
        evidence=kw.get("evidence", {}),
        checked_at=NOW - timedelta(hours=hours_ago),
        run_id=kw.get("run_id"),
    )


@contextlib.asynccontextmanager
async def opened(settings: Settings) -> AsyncIterator[tuple[MsspApp, object]]:
    app = MsspApp(Services(StoreSource(), EventBus(), settings, None))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: isinstance(app.screen, DashboardScreen) and app.screen.enriched)
        yield app, pilot


async def test_backups_screen_shows_each_hosts_latest_state_reason_and_evidence(
    db: Settings,
) -> None:
    await fleet()
    await check("acme/hq/web0", "CORRUPT", "old verdict", 50)
    await check("acme/hq/web0", "VERIFIED", "restored 2 files, hashes match", 5, evidence=EVIDENCE,
                run_id=7)  # fmt: skip
    await check("acme/hq/db0", "STALE", "newest snapshot is 9 days old", 2)
    await check("acme/hq/web1", "UNVERIFIABLE", "the host could not be reached", 1)
    async with opened(db) as (app, pilot):
        assert app.model.rows["acme/hq/db0"].backup_state == "STALE"
        assert app.model.attention.backups_unverified == 2
        await pilot.press("B")
        await wait_for(lambda: isinstance(app.screen, BackupsScreen) and app.screen.loaded)
        await pilot.pause()
        text = screen_text(app)
        assert "old verdict" not in text  # only each host's newest
        for expected in ("acme/hq/web0", "VERIFIED", "snap a1b2c3d4 5h old, read 3/20 ok, "
                         "restore 2/2 ok", "newest snapshot is 9 days old", "UNVERIFIABLE",
                         "1 STALE"):  # fmt: skip
            assert expected in text, expected + "\n" + text
        table = app.screen.query_one("DataTable")
        assert table.get_row_at(0)[0].plain == "acme/hq/web1"  # problems first
        await pilot.press("p")
        assert "acme/hq/web0" not in screen_text(app)
        await pilot.press("p", "down", "down", "enter")  # the last row: the VERIFIED host
        await wait_for(lambda: isinstance(app.screen, BackupHistoryScreen) and app.screen.loaded)
        await pilot.pause()
        history = app.screen
        assert history.host == "acme/hq/web0"
        assert [c.state for c in history.checks] == ["VERIFIED", "CORRUPT"]
        text = screen_text(app)
        assert "Why: restored 2 files, hashes match" in text
        assert "✓ canary /srv/.canary" in text and "sftp:backup@nas" in text
        assert "snapshot a1b2c3d4 5h old (of 14)" in text
        assert "check ok, read ok 3/20 (5 packs, 3.0 MB)" in text
        await pilot.press("down")
        assert "Why: old verdict" in screen_text(app)
        await pilot.press("v")
        await wait_for(lambda: isinstance(app.screen, RunLauncherScreen))
        assert app.screen.initial_task == "backup.verify"
        assert app.screen.initial_target == "acme/hq/web0"


async def test_schedules_screen_next_run_in_zone_overdue_and_confirmed_toggle(
    db: Settings,
) -> None:
    await fleet()
    await add_schedule("nightly-verify", cron_text="30 2 * * *", task="command",
                       target="client:acme", params={"cmd": "true"}, timezone="Europe/Berlin",
                       now=NOW - timedelta(days=3))  # fmt: skip
    await add_schedule("weekly", cron_text="0 6 * * 1", task="command", target="acme/hq/web0",
                       params={"cmd": "uptime"}, timezone="America/New_York")  # fmt: skip
    async with opened(db) as (app, pilot):
        await pilot.press("S")
        await wait_for(lambda: isinstance(app.screen, SchedulesScreen) and app.screen.loaded)
        await pilot.pause()
        text = screen_text(app)
        assert "OVERDUE since" in text and "3 missed)" in text, text
        assert "CET" in text or "CEST" in text  # shown in the schedule's own zone
        assert "EST" in text or "EDT" in text
        assert "is `mssp daemon` running?" in text
        await pilot.press("e")  # the first row: nightly-verify
        await wait_for(lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("n")
        assert (await Schedule.get(name="nightly-verify")).enabled
        await pilot.press("e")
        await wait_for(lambda: isinstance(app.screen, ConfirmDialog))
        assert "Disable schedule nightly-verify?" in screen_text(app)
        await pilot.press("y")
        screen = app.screen
        assert isinstance(screen, SchedulesScreen)
        await wait_for(lambda: not screen.schedules[0].enabled)
        assert not (await Schedule.get(name="nightly-verify")).enabled
        await pilot.pause()
        assert "disabled" in screen_text(app) and "OVERDUE" not in screen_text(app)
        actions = [(e.action, e.result, e.target) for e in await audit.entries()]
        assert actions == [
            ("schedule.disable", "intent", "nightly-verify"),
            ("schedule.disable", "ok", "nightly-verify"),
        ]


async def test_audit_screen_filters_and_verify_chain_finds_tampering(db: Settings) -> None:
    await audit.record("run.start", client="acme", target="client:acme", detail={"run": 1})
    await audit.record("cred.add", client="globex", target="globex/admin")
    await audit.record("run.end", client="acme", target="client:acme", result="failed")
    await audit.record("session.open", client="acme", target="acme/hq/web0")
    async with opened(db) as (app, pilot):
        await pilot.press("colon", *"audit client:acme run", "enter")
        await wait_for(lambda: isinstance(app.screen, AuditScreen) and app.screen.loaded)
        screen = app.screen
        assert [e.action for e in screen.entries] == ["run.start", "run.end"]
        await pilot.pause()
        assert "target client:acme" in screen_text(app)  # the newest entry's detail
        screen.set_filters("", "")
        await wait_for(lambda: screen.loaded and len(screen.entries) == 4)
        await pilot.press("v")
        await wait_for(lambda: screen.verified is not None)
        await pilot.pause()
        assert "✓ chain intact: 4 entries" in screen_text(app)
        # someone edits entry 2 in the database: the chain breaks there
        await AuditEntry.filter(seq=2).update(target="globex/other")
        screen.verified = None
        await pilot.press("v")
        await wait_for(lambda: screen.verified is not None)
        await pilot.pause()
        assert "✗ chain BROKEN at entry 2: content was changed" in screen_text(app)


async def test_agent_presence_starts_from_the_database(db: Settings) -> None:
    from mssp.models.inventory import Site
    from mssp.models.relay import SiteAgent

    await fleet()
    now = datetime.now(UTC)  # not the module's NOW: this may run minutes after collection
    site = await Site.get(slug="branch")
    await SiteAgent.create(
        site=site,
        relay_site_id="r-1",
        agent_key="ssh-ed25519 AAAA",
        token_issued_at=now - timedelta(days=2),
        token_expires_at=now - timedelta(days=1),
        joined_at=now - timedelta(days=2),
        online=False,
        last_seen=now - timedelta(minutes=40),
        presence_at=now - timedelta(minutes=39),
    )
    async with opened(db) as (app, pilot):
        assert app.model.sites[("acme", "branch")].agent_online is False
        assert app.model.attention.agents_offline == 1
        await pilot.pause()
        text = screen_text(app)
        assert "OFFLINE 40m" in text and "1 agent offline" in text
        assert "could not read" not in text


async def test_help_and_palette_reach_the_new_screens(db: Settings) -> None:
    async with opened(db) as (app, pilot):
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        app.screen.query_one("VerticalScroll").scroll_to(y=45, animate=False)
        await pilot.pause()
        text = screen_text(app)
        for expected in ("Schedules", "Audit log", "schedules.toggle", "audit.verify",
                         "backups.problems", ":verify-audit"):  # fmt: skip
            assert expected in text, expected + "\n" + text
        await pilot.press("escape")
        await pilot.press("ctrl+p", *"schedules")
        await wait_for(lambda: "Schedules" in screen_text(app))
        await pilot.press("enter")
        await wait_for(lambda: isinstance(app.screen, SchedulesScreen) and app.screen.loaded)
        await pilot.pause()
        assert "No schedules. Add one" in screen_text(app)
        await pilot.press("escape", "A")
        await wait_for(lambda: isinstance(app.screen, AuditScreen) and app.screen.loaded)
        await pilot.press("escape", "colon", *"backups", "enter")
        await wait_for(lambda: isinstance(app.screen, BackupsScreen) and app.screen.loaded)
        await pilot.pause()
        assert "No verification recorded yet" in screen_text(app)
