"""The dashboard driven by Pilot on an in-memory fleet: keys, filter, selection, live events."""

from __future__ import annotations

import contextlib
import sys
import time

import pytest
from textual.widgets import Input

from mssp.config import load_settings
from mssp.errors import ConfigError, DatabaseError
from mssp.events import AgentPresenceChanged, HostStateChanged
from mssp.inventory import HostRecord
from tests.tui.helpers import SIZE, assert_matches_snapshot, fleet, screen_text, wait_for
from tui.app import MsspApp
from tui.screens.dashboard import DashboardScreen
from tui.screens.dialogs import ErrorDialog
from tui.screens.help import HelpScreen
from tui.screens.host import HostScreen
from tui.services import FleetSnapshot, MemorySource, Services
from tui.widgets.host_table import HostTable


def make_app(snapshot: FleetSnapshot, **kw) -> MsspApp:
    return MsspApp(Services(MemorySource(snapshot), **kw))


async def opened(app: MsspApp, pilot) -> HostTable:
    await wait_for(lambda: isinstance(app.screen, DashboardScreen) and app.screen.loaded)
    await pilot.pause()
    return app.screen.query_one(HostTable)


def line_of(table: HostTable, host: str) -> str:
    index = table.model.index_of(host)
    assert index is not None
    return table.render_line(index - int(table.scroll_y) + 1).text


async def test_ten_thousand_hosts_open_and_navigate() -> None:
    start = time.perf_counter()
    app = make_app(fleet(10_000))
    async with app.run_test(size=SIZE) as pilot:
        table = await opened(app, pilot)
        assert time.perf_counter() - start < 5  # bench/tui records the real figure (< 2 s)
        assert len(app.model.order) == 10_000
        assert table.cursor_host == app.model.order[0]
        await pilot.press("down", "down", "space")
        assert app.model.selected == {app.model.order[2]}
        assert table.cursor_host == app.model.order[3]
        await pilot.press("end")
        assert table.cursor_host == app.model.order[-1]
        assert table.scroll_y > 9_000  # the view followed the cursor
        await pilot.press("home", "pagedown")
        assert table.cursor > 10


async def test_filter_narrows_live_and_esc_restores() -> None:
    app = make_app(fleet(500))
    async with app.run_test(size=SIZE) as pilot:
        table = await opened(app, pilot)
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"client0 status:down")
        assert app.model.filter_text == "client0 status:down"
        assert len(app.model.order) == 50
        assert all(n.startswith("client0/") for n in app.model.order)
        await pilot.press("enter")
        assert app.focused is table
        await pilot.press("escape")
        assert app.model.filter_text == ""
        assert len(app.model.order) == 500


async def test_sort_key_and_scope_from_the_tree() -> None:
    app = make_app(fleet(100))
    async with app.run_test(size=SIZE) as pilot:
        table = await opened(app, pilot)
        while app.model.sort_key != "status":
            await pilot.press("o")
        assert app.model.rows[table.cursor_host].status in ("down", "up")
        assert app.model.rows[app.model.order[0]].status == "down"
        assert "STATUS▲" in table.render_line(0).text
        tree = app.screen.query_one("#clients")
        tree.focus()
        await pilot.press("down", "enter")  # "client0"
        assert app.model.scope == ("client0", None)
        assert all(n.startswith("client0/") for n in app.model.order)
        await pilot.press("escape")
        assert app.model.scope is None


async def test_live_events_repaint_rows_and_attention() -> None:
    app = make_app(fleet(50))
    async with app.run_test(size=SIZE) as pilot:
        table = await opened(app, pilot)
        host = next(n for n in app.model.order if app.model.rows[n].status == "up")
        assert " up " in line_of(table, host)
        before = app.model.attention.hosts_down
        for state in ("queued", "running", "unreachable"):
            app.services.bus.publish(HostStateChanged(run_id=3, host=host, state=state))
        app.services.bus.publish(AgentPresenceChanged(client="client1", site="site1", online=False))
        await app.settle()
        await pilot.pause()
        assert " down " in line_of(table, host)
        assert "unreachable" in line_of(table, host)
        assert app.model.attention.hosts_down == before + 1
        text = screen_text(app)
        assert f"{before + 1} hosts down" in text
        assert "1 agent offline" in text
        assert "OFFLINE" in text  # the tree shows the site's agent
        assert "unreachable" in text  # the activity log


async def test_escape_sequences_from_inventory_never_reach_the_screen() -> None:
    evil = HostRecord(client="acme", site="hq", name="web\x1b[2J\x1b]0;owned\x07", address="x")
    app = make_app(FleetSnapshot(hosts=[evil]))
    async with app.run_test(size=SIZE) as pilot:
        table = await opened(app, pilot)
        app.services.bus.publish(
            HostStateChanged(
                run_id=1, host=evil.full_name, state="failed", message="\x1b[31mred\x1b[0m"
            )
        )
        await app.settle()
        await pilot.pause()
        text = screen_text(app)
        assert "\x1b" not in text and "\x07" not in text
        assert "\\x1b" in table.render_line(1).text  # shown, inert


async def test_enter_opens_the_host_and_esc_returns() -> None:
    app = make_app(fleet(20))
    async with app.run_test(size=SIZE) as pilot:
        table = await opened(app, pilot)
        host = table.cursor_host
        await pilot.press("enter")
        await wait_for(lambda: isinstance(app.screen, HostScreen) and app.screen.detail)
        await pilot.pause()
        assert host in screen_text(app)
        assert "ssh://root@10.0.0." in screen_text(app)
        assert "no runs recorded for this host" in screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_help_command_line_and_palette_commands() -> None:
    app = make_app(fleet(30))
    async with app.run_test(size=SIZE) as pilot:
        await opened(app, pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert "table.down" in screen_text(app)
        await pilot.press("escape")
        await pilot.press("colon", *"sort status desc", "enter")
        assert (app.model.sort_key, app.model.sort_reverse) == ("status", True)
        target = app.model.order[5]
        await pilot.press("colon", *f"host {target}", "enter")
        await wait_for(lambda: isinstance(app.screen, HostScreen))
        assert app.screen.host == target
        await pilot.press("colon", *"hosts", "enter")
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("colon", *"frobnicate", "enter")
        assert any("unknown command" in n.message for n in app._notifications)


async def test_keys_are_remapped_from_settings(tmp_path) -> None:
    settings = load_settings({"MSSP_HOME": str(tmp_path)}).replace(
        key_bindings={"filter": "f", "table.down": "n"}
    )
    app = make_app(fleet(30), settings=settings)
    async with app.run_test(size=SIZE) as pilot:
        table = await opened(app, pilot)
        await pilot.press("n")
        assert table.cursor == 1
        await pilot.press("slash")
        assert not isinstance(app.focused, Input)
        await pilot.press("f")
        assert isinstance(app.focused, Input)


def test_unknown_binding_id_is_a_config_error(tmp_path) -> None:
    settings = load_settings({"MSSP_HOME": str(tmp_path)}).replace(key_bindings={"filtr": "f"})
    with pytest.raises(ConfigError, match="filtr"):
        make_app(fleet(1), settings=settings)


class BrokenSource(MemorySource):
    async def snapshot(self) -> FleetSnapshot:
        raise DatabaseError("cannot open the database: disk on fire")


async def test_a_failing_worker_ends_in_an_error_dialog_titled_from_the_error() -> None:
    app = MsspApp(Services(BrokenSource(FleetSnapshot(hosts=[]))))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: isinstance(app.screen, ErrorDialog))
        await pilot.pause()
        text = screen_text(app)
        assert "Database error" in text and "disk on fire" in text
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_shell_says_clearly_when_sessions_have_not_landed(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "mssp.sessions.shell", None)  # import fails: not there
    app = make_app(fleet(5))
    async with app.run_test(size=SIZE) as pilot:
        await opened(app, pilot)
        await pilot.press("s")
        assert any("not available yet" in n.message for n in app._notifications)
        assert isinstance(app.screen, DashboardScreen)


async def test_shell_hands_the_terminal_to_mssp_ssh(monkeypatch, tmp_path) -> None:
    from textual.app import App

    import mssp.sessions.shell as shell

    calls = []

    def fake_blocking(settings, host, **kw):  # the child `mssp ssh` is tested by its owner
        calls.append(host)
        return 3

    @contextlib.contextmanager
    def fake_suspend(self):  # headless drivers cannot suspend; prove the app asks to
        calls.append("suspended")
        yield

    monkeypatch.setattr(shell, "run_shell_blocking", fake_blocking)
    monkeypatch.setattr(App, "suspend", fake_suspend)
    settings = load_settings({"MSSP_HOME": str(tmp_path)})
    app = make_app(fleet(5), settings=settings)
    async with app.run_test(size=SIZE) as pilot:
        table = await opened(app, pilot)
        host = table.cursor_host
        await pilot.press("s")
        assert calls == ["suspended", host]
        assert any("ended with status 3" in n.message for n in app._notifications)


async def test_shell_in_a_terminal_that_cannot_suspend(tmp_path) -> None:
    settings = load_settings({"MSSP_HOME": str(tmp_path)})
    app = make_app(fleet(5), settings=settings)
    async with app.run_test(size=SIZE) as pilot:
        await opened(app, pilot)
        await pilot.press("s")
        assert any("cannot hand over" in n.message for n in app._notifications)


async def test_dashboard_snapshot() -> None:
    app = make_app(fleet(40, seen=None))
    async with app.run_test(size=SIZE) as pilot:
        await opened(app, pilot)
        await pilot.press("down", "space", "down", "space")
        await pilot.pause()
        assert_matches_snapshot(screen_text(app), "dashboard")


async def test_help_snapshot() -> None:
    app = make_app(fleet(3, seen=None))
    async with app.run_test(size=SIZE) as pilot:
        await opened(app, pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert_matches_snapshot(screen_text(app), "help")


async def test_runs_started_elsewhere_reach_the_log_and_header() -> None:
    from tui.services import RunInfo

    source = MemorySource(fleet(10))
    app = MsspApp(Services(source))
    async with app.run_test(size=SIZE) as pilot:
        await opened(app, pilot)
        source.runs.append(RunInfo(41, "command", "tag:web", "halted", {"failed": 3}, failed=True))
        await app.dashboard.watch_runs().wait()
        app.dashboard.write_log()
        await pilot.pause()
        text = screen_text(app)
        assert "run 41 (command on tag:web) halted: failed 3" in text
        assert "1 failed run" in text


async def test_command_palette_jumps_to_a_host() -> None:
    app = make_app(fleet(30))
    async with app.run_test(size=SIZE) as pilot:
        await opened(app, pilot)
        target = app.model.order[7]
        await pilot.press("ctrl+p")
        await pilot.press(*target.rsplit("/", 1)[1])
        await wait_for(lambda: f"Open host {target}" in screen_text(app))
        await pilot.press("enter")
        await wait_for(lambda: isinstance(app.screen, HostScreen))
        assert app.screen.host == target
