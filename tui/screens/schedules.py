"""Schedules: what `mssp daemon` runs when, shown in each schedule's own time zone; enable/disable.

The next run is ``mssp.cron.next_run`` after the planned time the schedule last ran for, read in
the schedule's zone. When that time has passed and nothing ran (no daemon, a laptop asleep), the
schedule is *overdue*: the daemon will run it once, late, however many times it missed
(``mssp.cron.due``), and the screen says so rather than showing a time in the past as "next".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import DataTable, Footer, Static

from mssp import cron
from mssp.errors import MsspError
from mssp.scheduler import GRACE, ScheduleInfo
from tui.keys import bindings_for
from tui.screens.base import MsspScreen
from tui.screens.dialogs import ConfirmDialog
from tui.text import one_line
from tui.widgets.host_table import format_age

COLUMNS = (
    ("name", 16),
    ("state", 8),
    ("cron", 10),
    ("zone", 16),
    ("task", 14),
    ("target", 18),
    ("next run", 44),
    ("last run", 18),
)


@dataclass(frozen=True)
class ScheduleTiming:
    """When a schedule runs next, as the consultant needs to read it."""

    next_run: datetime | None
    """The next planned time (aware, in the schedule's zone); None when disabled or invalid."""
    overdue: bool
    """That time has passed without a run: the daemon runs it once, late, when it next ticks."""
    missed: int
    """Planned times passed since the last run (overdue only)."""
    error: str = ""
    """Why the timing cannot be computed (a bad zone or expression)."""


def schedule_timing(info: ScheduleInfo, now: datetime) -> ScheduleTiming:
    """Pure: the next run of ``info`` at ``now`` (mssp.cron.next_run in the schedule's zone)."""
    if not info.enabled:
        return ScheduleTiming(None, False, 0)
    try:
        zone = ZoneInfo(info.timezone)
        planned = cron.next_run(info.cron, info.last_planned, zone)
        if planned > now:
            return ScheduleTiming(planned.astimezone(zone), False, 0)
        due = cron.due(info.cron, zone, last_planned=info.last_planned, now=now, grace=GRACE)
        return ScheduleTiming(planned.astimezone(zone), True, due.missed + 1)
    except (MsspError, ValueError, KeyError) as exc:
        message = exc.message if isinstance(exc, MsspError) else str(exc)
        return ScheduleTiming(None, False, 0, error=message)


def timing_text(timing: ScheduleTiming, now: datetime) -> Text:
    if timing.error:
        return Text(f"cannot compute: {one_line(timing.error)}", style="red")
    if timing.next_run is None:
        return Text("-", style="dim")
    local = f"{timing.next_run:%Y-%m-%d %H:%M %Z}"
    if timing.overdue:
        ago = format_age((now - timing.next_run).total_seconds())
        since = f"{timing.next_run:%m-%d %H:%M %Z}"  # the year is rarely news; keeps it in 44
        return Text(f"OVERDUE since {since} ({ago}, {timing.missed} missed)", style="bold yellow")
    return Text(f"{local} (in {format_age((timing.next_run - now).total_seconds())})")


def last_run_text(info: ScheduleInfo, run_state: str | None) -> Text:
    if info.last_run_id is None:
        if info.last_error:
            return Text(f"not started: {one_line(info.last_error)[:50]}", style="red")
        return Text("never", style="dim")
    text = Text(f"run {info.last_run_id}")
    if run_state:
        bad = run_state in ("failed", "halted", "cancelled", "interrupted")
        text.append(f" {run_state}", style="red" if bad else "green")
    if info.last_late:
        text.append(" late", style="yellow")
    if info.last_missed:
        text.append(f" ({info.last_missed} missed)", style="yellow")
    return text


class SchedulesScreen(MsspScreen):
    """The daemon's schedules. e: enable/disable (asks first); enter: the last run."""

    BINDINGS = bindings_for("schedules")

    def __init__(self) -> None:
        super().__init__(name="schedules")
        self.schedules: list[ScheduleInfo] = []
        self.run_states: dict[int, str] = {}
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Static("Schedules (run by `mssp daemon`)", classes="section-title")
        yield Static(id="schedule-summary", classes="hint")
        yield DataTable(id="schedule-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, width in COLUMNS:
            table.add_column(label, width=width)
        table.focus()
        self.load()

    @work(exclusive=True, group="schedules", exit_on_error=False)
    async def load(self) -> None:
        source = self.app.services.source  # type: ignore[attr-defined]
        self.schedules = await source.schedules()
        runs = {r.run_id: r.state for r in await source.recent_runs(200)}
        self.run_states = runs
        self.show()
        self.loaded = True

    def show(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        overdue = 0
        for info in self.schedules:
            timing = schedule_timing(info, now)
            overdue += timing.overdue
            if info.running:
                state = Text("running", style="bold cyan")
            elif info.enabled:
                state = Text("enabled", style="green")
            else:
                state = Text("disabled", style="dim")
            table.add_row(
                Text(one_line(info.name), style="bold"),
                state,
                info.cron,
                info.timezone,
                info.task,
                Text(one_line(info.target)),
                timing_text(timing, now),
                last_run_text(info, self.run_states.get(info.last_run_id or -1)),
                key=info.name,
            )
        if self.schedules:
            table.move_cursor(row=min(row, len(self.schedules) - 1))
        enabled = sum(1 for s in self.schedules if s.enabled)
        summary = Text(f"{len(self.schedules)} schedules, {enabled} enabled")
        if overdue:
            summary.append(
                f"   ⚠ {overdue} overdue: is `mssp daemon` running? It runs each once, late, "
                "however many times were missed.",
                style="bold yellow",
            )
        if not self.schedules:
            summary = Text(
                "No schedules. Add one: mssp schedule add NAME --cron '30 2 * * *' "
                "--task backup.verify --target 'tag:backed-up'",
                style="dim",
            )
        self.query_one("#schedule-summary", Static).update(summary)

    def current(self) -> ScheduleInfo | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((s for s in self.schedules if s.name == key), None)

    def action_toggle(self) -> None:
        info = self.current()
        if info is None:
            return
        verb = "Disable" if info.enabled else "Enable"
        consequence = (
            "The daemon will not start it until it is enabled again (a run in flight goes on)."
            if info.enabled
            else "It counts from now: times passed while it was disabled are not run."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.toggle(info.name, not info.enabled)

        self.app.push_screen(
            ConfirmDialog(
                f"{verb} schedule {one_line(info.name)}?",
                f"{info.task} on {info.target!r} at '{info.cron}' ({info.timezone}).\n"
                f"{consequence}",
                yes=f"{verb} (y)",
            ),
            answered,
        )

    @work(exclusive=True, group="toggle", exit_on_error=False)
    async def toggle(self, name: str, enabled: bool) -> None:
        source = self.app.services.source  # type: ignore[attr-defined]
        info = await source.set_schedule_enabled(name, enabled)
        self.schedules = [info if s.name == name else s for s in self.schedules]
        self.show()
        self.notify(f"schedule {name} {'enabled' if enabled else 'disabled'}", title="Schedules")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        info = self.current()
        if info is not None and info.last_run_id is not None:
            self.open_run(info.last_run_id)
        elif info is not None:
            self.notify(f"schedule {info.name} has not run yet", title="Schedules")

    @work(exclusive=True, group="open", exit_on_error=False)
    async def open_run(self, run_id: int) -> None:
        from mssp.engine import load_summary

        summary = await load_summary(run_id)
        self.app.open_live_run(run_id, [h.host for h in summary.hosts])  # type: ignore[attr-defined]

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_refresh(self) -> None:
        self.load()


__all__ = ["ScheduleTiming", "SchedulesScreen", "schedule_timing", "timing_text"]
