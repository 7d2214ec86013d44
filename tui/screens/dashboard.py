"""The dashboard: attention header, clients → sites tree, hosts table, activity log; live by events.

The app's event consumer records engine events in the FleetModel; this screen flushes the model
every 100 ms and tells each widget what changed, so a flood of events costs one repaint per tick.
"""

from __future__ import annotations

import gc
import time

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Input

from tui.keys import bindings_for
from tui.model import FleetModel, LogLine
from tui.screens.base import MsspScreen
from tui.widgets.activity_log import ActivityLog
from tui.widgets.attention_header import AttentionHeader
from tui.widgets.client_tree import ClientTree
from tui.widgets.host_table import HostTable

FLUSH_INTERVAL = 0.1
AGE_TICK = 5.0
LOG_INTERVAL = 0.5
RUNS_POLL = 5.0
"""Seconds between looks at the database for runs started by other processes (CLI, daemon)."""


class DashboardScreen(MsspScreen):
    """Every client live. Orchestrates; the widgets only display."""

    BINDINGS = bindings_for("dashboard")

    def __init__(self, model: FleetModel) -> None:
        super().__init__(name="dashboard")
        self.model = model
        self.loaded = False
        self.enriched = False
        self._log_buffer: list[LogLine] = []
        self._runs_error = ""

    def compose(self) -> ComposeResult:
        yield AttentionHeader(id="attention")
        with Horizontal(id="main"):
            yield ClientTree(id="clients")
            with Vertical(id="right"):
                yield HostTable(self.model, id="hosts")
                yield Input(
                    placeholder="filter: text, client:, site:, status:down, tag:, !neg", id="filter"
                )
                yield ActivityLog(id="activity")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.set_interval(FLUSH_INTERVAL, self.flush, name="flush")
        self.set_interval(AGE_TICK, self._tick, name="ages")
        self.set_interval(LOG_INTERVAL, self.write_log, name="log")
        self.set_interval(RUNS_POLL, self.watch_runs, name="runs")
        self.query_one(HostTable).focus()
        self.load()

    # -- data ------------------------------------------------------------------------------------

    @work(exclusive=True, group="load", exit_on_error=False)
    async def load(self) -> None:
        """(Re)load the fleet from the source; events keep it live afterwards."""
        snapshot = await self.app.services.source.snapshot()  # type: ignore[attr-defined]
        self.model.load(
            snapshot.hosts, snapshot.status, snapshot.sites, failed_runs=snapshot.failed_runs
        )
        self.loaded = True
        self.model.note_runs(await self.app.services.source.recent_runs(20))  # type: ignore[attr-defined]
        self.query_one(ActivityLog).add(
            [
                LogLine(
                    time.time(),
                    "info",
                    f"loaded {len(self.model.rows)} hosts in "
                    f"{len(self.model.sites)} sites of {len(self.model.clients())} clients",
                )
            ]
        )
        # Thousands of long-lived rows make every full garbage collection scan them (100+ ms
        # pauses under load, measured in bench/tui); freezing moves them out of its way.
        gc.collect()
        gc.freeze()
        self.refresh_all()
        self.enrich(snapshot.hosts)

    @work(exclusive=True, group="enrich", exit_on_error=False)
    async def enrich(self, hosts) -> None:
        """After the first paint: host states from recent runs, pending updates, backups."""
        found = await self.app.services.source.enrich(hosts)  # type: ignore[attr-defined]
        if found.status:
            self.model.merge_status(found.status)
            self.refresh_all()
        self._log_buffer.extend(
            LogLine(time.time(), "warning", f"could not read {w}") for w in found.warnings
        )
        self.enriched = True

    @work(group="refresh", exit_on_error=False)
    async def refresh_hosts(self, hosts, runs: tuple[int, ...]) -> None:
        """After a run ended: re-read what the store now knows of its hosts (OS from facts,
        pending updates, backup verdicts), so a facts or verify run shows without a reload."""
        source = self.app.services.source  # type: ignore[attr-defined]
        await source.record_runs(runs)
        found = await source.enrich(hosts)
        if found.status:
            self.model.merge_status(found.status)
            self.query_one(HostTable).rows_changed(frozenset(found.status), reordered=True)
            self._update_header()

    @work(exclusive=True, group="runs", exit_on_error=False)
    async def watch_runs(self) -> None:
        """Learn of runs started or finished elsewhere: the database is the record."""
        try:
            runs = await self.app.services.source.recent_runs(20)  # type: ignore[attr-defined]
        except Exception as exc:  # a background poll: say it in the log once, no dialog storm
            message = f"cannot read recent runs: {type(exc).__name__}: {exc}"
            if message != self._runs_error:
                self._runs_error = message
                self._log_buffer.append(LogLine(time.time(), "warning", message))
            return
        self._runs_error = ""
        lines = self.model.note_runs(sorted(runs, key=lambda r: r.run_id))
        self._log_buffer.extend(lines)
        self._update_header()

    def refresh_all(self) -> None:
        self.query_one(HostTable).reload()
        self.query_one(ClientTree).show(self.model.clients())
        self._update_header()

    def flush(self) -> None:
        """Fold pending events into the model and repaint only what they changed."""
        result = self.model.flush()
        if result.empty:
            return
        table = self.query_one(HostTable)
        table.rows_changed(result.changed_hosts, reordered=result.reordered)
        if result.sites_changed:
            self.query_one(ClientTree).show(self.model.clients())
        if result.log:
            self._log_buffer.extend(result.log)
        if result.runs_finished and self.model.touched:
            names, self.model.touched = self.model.touched, set()
            records = [self.model.records[n] for n in names if n in self.model.records]
            self.refresh_hosts(records, result.runs_finished)
        self._update_header()

    def write_log(self) -> None:
        """Append the buffered activity lines to the log."""
        # Appending to the log re-lays it out; twice a second is plenty for people to read.
        if self._log_buffer:
            lines, self._log_buffer = self._log_buffer, []
            self.query_one(ActivityLog).add(lines)

    def _update_header(self) -> None:
        header = self.query_one(AttentionHeader)
        header.attention = self.model.attention
        header.host_count = len(self.model.rows)
        header.running = len(self.model.active_runs)
        header.shown = len(self.model.order)
        header.selected = len(self.model.selected)

    def on_host_table_selection_changed(self, event: HostTable.SelectionChanged) -> None:
        self._update_header()

    def _tick(self) -> None:
        self.query_one(HostTable).tick()
        self.query_one(ClientTree).show(self.model.clients())

    # -- filter and scope ----------------------------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if event.value == self.model.filter_text:
            return  # set_filter() already applied it
        self.model.set_filter(event.value)
        self.query_one(HostTable).reload()
        self._update_header()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if not event.value:
            event.input.display = False
        self.query_one(HostTable).focus()

    def set_filter(self, text: str) -> None:
        box = self.query_one("#filter", Input)
        box.value = text
        box.display = bool(text)
        self.model.set_filter(text)
        self.query_one(HostTable).reload()
        self._update_header()

    def on_client_tree_scope_chosen(self, event: ClientTree.ScopeChosen) -> None:
        self.model.set_scope(event.scope.client, event.scope.site)
        table = self.query_one(HostTable)
        table.reload()
        table.focus()
        self._update_header()

    def action_back(self) -> None:
        """esc: undo the innermost narrowing (filter, then scope, then selection)."""
        table = self.query_one(HostTable)
        if self.model.filter_text or self.query_one("#filter", Input).display:
            self.set_filter("")
            table.focus()
        elif self.model.scope is not None:
            self.model.set_scope(None)
            table.reload()
            self._update_header()
        elif self.model.selected:
            table.action_clear_marks()

    def action_focus_next_pane(self) -> None:
        self.focus_next()

    def action_reload(self) -> None:
        self.load()

    # -- actions on hosts ------------------------------------------------------------------------

    def targets(self) -> list[str]:
        """The multi-selection, or else the host under the cursor."""
        if self.model.selected:
            return self.model.visible_selection()
        host = self.query_one(HostTable).cursor_host
        return [host] if host else []

    def action_runs(self) -> None:
        self.app.open_runs()  # type: ignore[attr-defined]

    def action_backups(self) -> None:
        self.app.open_backups()  # type: ignore[attr-defined]

    def action_schedules(self) -> None:
        self.app.open_schedules()  # type: ignore[attr-defined]

    def action_audit(self) -> None:
        self.app.open_audit()  # type: ignore[attr-defined]

    def action_run(self) -> None:
        self.app.open_launcher(self.targets())  # type: ignore[attr-defined]

    def action_shell(self) -> None:
        host = self.query_one(HostTable).cursor_host
        if host:
            self.app.open_shell(host)  # type: ignore[attr-defined]

    def on_host_table_selected(self, event: HostTable.Selected) -> None:
        self.app.open_host(event.host)  # type: ignore[attr-defined]
