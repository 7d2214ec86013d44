"""The host screen: what we know of one host (facts), its recent runs with outputs, its pinned key.

Everything shown here came from the host or its inventory file, so it passes through the
neutraliser and is shown as plain text, never as markup.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Footer, Log, OptionList, Static, TabbedContent, TabPane
from textual.widgets.option_list import Option

from tui.keys import bindings_for
from tui.screens.base import MsspScreen
from tui.services import HostDetail
from tui.text import neutralise, one_line
from tui.widgets.host_table import format_age

MAX_FACT_ROWS = 400


def flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested facts as (dotted.key, value) rows, lists joined."""
    rows: list[tuple[str, str]] = []
    for key in sorted(data, key=str):
        value = data[key]
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows.extend(flatten(value, name + "."))
        elif isinstance(value, list | tuple):
            rows.append((name, ", ".join(map(str, value))))
        else:
            rows.append((name, str(value)))
    return rows


class HostScreen(MsspScreen):
    """One host. esc goes back; r runs on it; s opens a shell."""

    BINDINGS = bindings_for("host")

    def __init__(self, host: str) -> None:
        super().__init__(name="host")
        self.host = host
        self.detail: HostDetail | None = None

    def compose(self) -> ComposeResult:
        yield Static(
            Text(one_line(self.host), style="bold"), id="host-title", classes="section-title"
        )
        yield Static(id="host-summary", classes="hint")
        with TabbedContent(initial="tab-runs"):
            with TabPane("Recent runs", id="tab-runs"):
                yield OptionList(id="runs")
                yield Log(id="run-output", max_lines=5000)
            with TabPane("Facts", id="tab-facts"):
                yield VerticalScroll(Static(id="facts"))
            with TabPane("Backups", id="tab-backups"):
                yield VerticalScroll(Static(id="backups"))
            with TabPane("Host key", id="tab-keys"):
                yield Static(id="keys")
        yield Footer()

    def on_mount(self) -> None:
        self.load()

    @work(exclusive=True, group="host", exit_on_error=False)
    async def load(self) -> None:
        source = self.app.services.source  # type: ignore[attr-defined]
        self.detail = detail = await source.host_detail(self.host)
        record = detail.record
        row = self.app.model.rows.get(self.host)  # type: ignore[attr-defined]
        summary = Text()
        summary.append(f"{record.transport}://{record.username}@{record.address}:{record.port}")
        summary.append(f"  via {record.via}")
        if record.os_family:
            summary.append(f"  os {record.os_family}")
        if record.tags:
            summary.append(f"  tags {','.join(sorted(record.tags))}")
        if row is not None:
            seen = format_age(time.time() - row.last_seen) if row.last_seen else "never"
            summary.append(f"  status {row.status} (seen {seen})")
        self.query_one("#host-summary", Static).update(Text(one_line(summary.plain)))
        self._show_facts(detail)
        self._show_backups(detail)
        self._show_keys(detail)
        runs = self.query_one("#runs", OptionList)
        runs.clear_options()
        if not detail.runs:
            runs.add_option(Option("no runs recorded for this host", disabled=True))
        for i, run in enumerate(detail.runs):
            at = run.finished_at or run.started_at
            when = time.strftime("%m-%d %H:%M", time.localtime(at)) if at else "-"
            label = f"run {run.run_id:<5} {when}  {one_line(run.task):<20} {run.state:<12}"
            if run.exit_status is not None:
                label += f" exit {run.exit_status}"
            if run.error:
                label += f"  {one_line(run.error)}"
            runs.add_option(Option(Text(label), id=str(i)))
        if detail.runs:
            runs.highlighted = 0

    def _show_facts(self, detail: HostDetail) -> None:
        widget = self.query_one("#facts", Static)
        if not detail.facts:
            widget.update(
                Text("No facts gathered yet: run the facts task on this host.", style="dim")
            )
            return
        table = Table(show_header=True, expand=True, box=None)
        table.add_column("fact", style="bold")
        table.add_column("value")
        rows = flatten(detail.facts)
        for key, value in rows[:MAX_FACT_ROWS]:
            table.add_row(Text(one_line(key)), Text(neutralise(value)))
        if len(rows) > MAX_FACT_ROWS:
            table.add_row("…", f"{len(rows) - MAX_FACT_ROWS} more")
        when = (
            f"collected {format_age(time.time() - detail.facts_at)} ago"
            if isinstance(detail.facts_at, int | float)
            else ""
        )
        table.caption = when
        widget.update(table)

    def _show_backups(self, detail: HostDetail) -> None:
        widget = self.query_one("#backups", Static)
        if not detail.backups:
            widget.update(Text("No backup verification recorded for this host.", style="dim"))
            return
        table = Table(show_header=True, expand=True, box=None)
        table.add_column("checked")
        table.add_column("state", style="bold")
        table.add_column("run")
        table.add_column("why")
        for check in detail.backups:
            style = "green" if check.state == "VERIFIED" else "red"
            table.add_row(
                time.strftime("%Y-%m-%d %H:%M", time.localtime(check.checked_at)),
                Text(check.state, style=style),
                str(check.run_id or "-"),
                Text(one_line(check.reason)),
            )
        widget.update(table)

    def _show_keys(self, detail: HostDetail) -> None:
        widget = self.query_one("#keys", Static)
        if not detail.host_keys:
            widget.update(
                Text(
                    "No host key pinned yet: the first connection pins it "
                    "(host_key_policy = accept-new).",
                    style="dim",
                )
            )
            return
        widget.update(Text("\n".join(one_line(k) for k in detail.host_keys)))

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        log = self.query_one("#run-output", Log)
        log.clear()
        if self.detail is None or event.option.id is None:
            return
        run = self.detail.runs[int(event.option.id)]
        if run.stdout:
            log.write(neutralise(run.stdout))
        if run.stderr:
            log.write("\n--- stderr ---\n" + neutralise(run.stderr))
        if not run.stdout and not run.stderr:
            log.write("(no output)")

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_run(self) -> None:
        self.app.open_launcher([self.host])  # type: ignore[attr-defined]

    def action_shell(self) -> None:
        self.app.open_shell(self.host)  # type: ignore[attr-defined]

    def action_refresh(self) -> None:
        self.load()
