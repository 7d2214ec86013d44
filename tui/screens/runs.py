"""Runs history: the recent runs, whoever started them (dashboard, CLI, daemon); enter opens one."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from tui.keys import bindings_for
from tui.screens.base import MsspScreen
from tui.services import RunInfo
from tui.text import one_line

HISTORY = 100


def run_label(run: RunInfo) -> Text:
    counts = "  ".join(f"{k} {v}" for k, v in sorted(run.counts.items()) if v)
    text = Text(f"run {run.run_id:<6} {run.state:<11} ")
    text.append(f"{one_line(run.task):<18} ", style="bold")
    text.append(f"{one_line(run.target)[:40]:<41}")
    text.append(counts, style="red" if run.failed else "green")
    return text


class RunsScreen(MsspScreen):
    """The newest runs first. enter: the run's hosts, states and outputs; esc: back."""

    BINDINGS = bindings_for("runs")

    def __init__(self) -> None:
        super().__init__(name="runs")
        self.runs: list[RunInfo] = []

    def compose(self) -> ComposeResult:
        yield Static("Runs (newest first)", classes="section-title")
        yield OptionList(id="run-list")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()
        self.load()

    @work(exclusive=True, group="runs", exit_on_error=False)
    async def load(self) -> None:
        source = self.app.services.source  # type: ignore[attr-defined]
        self.runs = await source.recent_runs(HISTORY)
        runs = self.query_one(OptionList)
        runs.clear_options()
        if not self.runs:
            runs.add_option(Option("no runs recorded yet", disabled=True))
        for run in self.runs:
            runs.add_option(Option(run_label(run), id=str(run.run_id)))
        if self.runs:
            runs.highlighted = 0

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self.open_run(int(event.option.id))

    @work(exclusive=True, group="open", exit_on_error=False)
    async def open_run(self, run_id: int) -> None:
        from mssp.engine import load_summary

        summary = await load_summary(run_id)
        self.app.open_live_run(run_id, [h.host for h in summary.hosts])  # type: ignore[attr-defined]

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_refresh(self) -> None:
        self.load()
