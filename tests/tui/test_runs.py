"""Runs from the dashboard with the real engine, store and in-process SSH servers (SQLite and
PostgreSQL): launch, watch states change, output, retry, cancel; the host screen from the store."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from textual.widgets import Input, Select

from mssp.config import Settings
from mssp.connections import ConnectionManager, Credentials
from mssp.engine import Engine
from mssp.events import EventBus
from mssp.inventory import HostRecord
from mssp.store import inventory as store
from mssp.store.hostkeys import DbHostKeyStore
from tests.sshserver import SSHTestServer, ssh_test_server
from tests.tui.helpers import SIZE, screen_text, wait_for
from tui.app import MsspApp
from tui.screens.dashboard import DashboardScreen
from tui.screens.dialogs import ConfirmDialog
from tui.screens.host import HostScreen
from tui.screens.live_run import LiveRunScreen
from tui.screens.run_launcher import RunLauncherScreen
from tui.services import Services, StoreSource
from tui.widgets.run_table import RunTable


class ServerCredentials:
    """CredentialResolver: every host logs in with the test server's client key."""

    def __init__(self, srv: SSHTestServer) -> None:
        self.srv = srv

    async def resolve(self, host: HostRecord) -> Credentials:
        return Credentials(private_key=self.srv.client_key)


@pytest.fixture
async def server() -> AsyncIterator[SSHTestServer]:
    async with ssh_test_server(ports=3) as srv:
        yield srv


@contextlib.asynccontextmanager
async def dashboard(settings: Settings, srv: SSHTestServer) -> AsyncIterator[MsspApp]:
    """Three hosts on the test server and one whose port is closed, in the real store; the app
    with a real engine (host keys pinned in the database on first contact)."""
    await store.create_client("acme", "Acme Ltd")
    await store.create_site("acme", "hq", "Head office")
    for i, port in enumerate(srv.ports):
        await store.create_host(
            "acme", "hq", f"web{i}", address=srv.address, port=port, username=srv.username
        )
    await store.create_host("acme", "hq", "dead", address="127.0.0.1", port=1)
    settings = settings.replace(connect_timeout=5.0)
    bus = EventBus()
    manager = ConnectionManager(
        settings, credentials=ServerCredentials(srv), host_keys=DbHostKeyStore(), connect_attempts=1
    )
    try:
        async with Engine(settings, connections=manager, bus=bus, cancel_grace=0.5) as engine:
            yield MsspApp(Services(StoreSource(), bus, settings, engine))
    finally:
        await manager.aclose()


async def launch(app: MsspApp, pilot, target: str, cmd: str) -> LiveRunScreen:
    """From the dashboard: r, choose the command task, type the command and target, start, yes."""
    await wait_for(lambda: isinstance(app.screen, DashboardScreen) and app.screen.loaded)
    await pilot.press("r")
    await wait_for(lambda: isinstance(app.screen, RunLauncherScreen))
    launcher = app.screen
    launcher.query_one("#task", Select).value = "command"
    await wait_for(lambda: bool(launcher.query("#param-cmd")))
    launcher.query_one("#param-cmd", Input).focus()
    await pilot.press(*cmd)
    target_box = launcher.query_one("#target", Input)
    target_box.value = ""
    target_box.focus()
    await pilot.press(*target)
    await pilot.press("ctrl+s")
    await wait_for(lambda: isinstance(app.screen, ConfirmDialog))  # `command` is destructive
    assert "destructive" in screen_text(app)
    await pilot.press("y")
    await wait_for(lambda: isinstance(app.screen, LiveRunScreen))
    return app.screen


async def settled(app: MsspApp, pilot, screen: LiveRunScreen) -> None:
    await app.services.engine.wait_idle()
    await wait_for(lambda: screen.finished.is_set())
    await app.settle()
    await pilot.pause()


async def test_launch_watch_output_and_retry(db: Settings, server: SSHTestServer) -> None:
    async with dashboard(db, server) as app, app.run_test(size=SIZE) as pilot:
        live = await launch(app, pilot, "client:acme", "echo out-from-$USER; exit 0")
        await settled(app, pilot, live)
        rows = live.model.rows
        assert {n: r.last_run for n, r in rows.items()} == {
            "acme/hq/web0": "ok",
            "acme/hq/web1": "ok",
            "acme/hq/web2": "ok",
            "acme/hq/dead": "unreachable",
        }
        text = screen_text(app)
        assert "ok 3" in text and "unreachable 1" in text and "finished" in text
        # the selected host's output (sorted by state: problems first, then the others)
        table = live.query_one(RunTable)
        while table.cursor_host != "acme/hq/web0":
            await pilot.press("down")
        assert f"out-from-{server.username}" in screen_text(app)
        # the dashboard learnt it from events, without a reload
        assert app.model.rows["acme/hq/dead"].status == "down"
        assert app.model.rows["acme/hq/web1"].last_run == "ok"
        first_run = live.run_id
        # retry the unreachable host: a new run over it alone
        await pilot.press("u")
        await wait_for(
            lambda: isinstance(app.screen, LiveRunScreen) and app.screen.run_id != first_run
        )
        retry = app.screen
        assert retry.host_names == ["acme/hq/dead"]
        await settled(app, pilot, retry)
        assert retry.model.rows["acme/hq/dead"].last_run == "unreachable"
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)
        assert app.model.attention.failed_runs >= 1
        assert app.model.attention.hosts_down == 1


async def test_cancel_a_running_run(db: Settings, server: SSHTestServer) -> None:
    async with dashboard(db, server) as app, app.run_test(size=SIZE) as pilot:
        live = await launch(app, pilot, "web*", "sleep 30")
        await wait_for(
            lambda: (
                any(r.last_run == "running" for r in live.model.rows.values()) or bool(live.flush())
            )
        )
        await pilot.press("c")
        await wait_for(lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await settled(app, pilot, live)
        assert live.state == "cancelled"
        states = {r.last_run for r in live.model.rows.values()}
        assert states <= {"cancelled", "interrupted"}, states
        assert "cancelled" in screen_text(app)


async def test_host_screen_shows_pinned_key_and_recent_output(
    db: Settings, server: SSHTestServer
) -> None:
    async with dashboard(db, server) as app, app.run_test(size=SIZE) as pilot:
        live = await launch(app, pilot, "web1", "echo hello-host-screen")
        await settled(app, pilot, live)
        await pilot.press("escape")
        app.dashboard.set_filter("web1")
        await pilot.press("enter")
        await wait_for(lambda: isinstance(app.screen, HostScreen) and app.screen.detail)
        host_screen = app.screen
        await pilot.pause()
        assert host_screen.detail.runs[0].state == "ok"
        assert "hello-host-screen" in screen_text(app)  # the newest run's output is shown
        host_screen.query_one("TabbedContent").active = "tab-keys"
        await pilot.pause()
        assert server.host_key_public.split()[1][:40] in screen_text(app)


async def test_target_preview_and_in_place_validation(db: Settings, server: SSHTestServer) -> None:
    async with dashboard(db, server) as app, app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: isinstance(app.screen, DashboardScreen) and app.screen.loaded)
        app.open_launcher([], task="command", target="web*&!web2")
        await wait_for(lambda: isinstance(app.screen, RunLauncherScreen))
        launcher = app.screen
        await wait_for(lambda: launcher.matched == ["acme/hq/web0", "acme/hq/web1"])
        assert "2 of 4 hosts match" in screen_text(app)
        target = launcher.query_one("#target", Input)
        target.value = "client:"
        await wait_for(lambda: launcher.target_error != "")
        launcher.query_one("#forks", Input).value = "lots"
        await pilot.pause()
        assert "forks must be a number" in screen_text(app)
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, RunLauncherScreen)  # nothing started
        assert any("Cannot start" in (n.title or "") for n in app._notifications)


async def test_a_fresh_dashboard_reads_states_updates_and_facts_from_the_store(
    db: Settings, server: SSHTestServer
) -> None:
    from mssp.store.facts import save_facts

    async with dashboard(db, server) as app:
        async with app.run_test(size=SIZE) as pilot:
            live = await launch(app, pilot, "client:acme", "true")
            await settled(app, pilot, live)
        record = await store.get_host("acme/hq/web2")
        await save_facts(record, {"os": {"family": "debian"}, "updates": {"pending": 7}})
        # a second dashboard, as after a restart: nothing but the database to go on
        fresh = MsspApp(Services(StoreSource(), EventBus(), db, None))
        async with fresh.run_test(size=SIZE) as pilot:
            await wait_for(
                lambda: isinstance(fresh.screen, DashboardScreen) and fresh.screen.enriched
            )
            rows = fresh.model.rows
            assert rows["acme/hq/dead"].status == "down"
            assert rows["acme/hq/dead"].last_run == "unreachable"
            assert rows["acme/hq/web0"].status == "up" and rows["acme/hq/web0"].last_seen
            assert rows["acme/hq/web2"].pending_updates == 7
            assert rows["acme/hq/web2"].os == "debian"
            assert fresh.model.attention.hosts_down == 1
            assert fresh.model.attention.failed_runs == 1
            await pilot.pause()
            assert "could not read" not in screen_text(fresh)
            fresh.open_host("acme/hq/web2")
            await wait_for(lambda: isinstance(fresh.screen, HostScreen) and fresh.screen.detail)
            fresh.screen.query_one("TabbedContent").active = "tab-facts"
            await pilot.pause()
            assert "updates.pending" in screen_text(fresh)


async def test_runs_history_opens_a_past_run(db: Settings, server: SSHTestServer) -> None:
    from tui.screens.runs import RunsScreen

    async with dashboard(db, server) as app, app.run_test(size=SIZE) as pilot:
        live = await launch(app, pilot, "web0,web1", "echo first")
        await settled(app, pilot, live)
        run_id = live.run_id
        await pilot.press("escape")
        await pilot.press("R")
        await wait_for(lambda: isinstance(app.screen, RunsScreen) and bool(app.screen.runs))
        await pilot.pause()
        assert f"run {run_id}" in screen_text(app) and "ok 2" in screen_text(app)
        await pilot.press("enter")
        await wait_for(lambda: isinstance(app.screen, LiveRunScreen))
        past = app.screen
        await wait_for(lambda: past.finished.is_set())
        past.flush()
        assert past.run_id == run_id
        assert {r.last_run for r in past.model.rows.values()} == {"ok"}
