"""The live run: per-host states, counts and progress, the selected host's output; cancel, retry.

It subscribes to the event bus for its run only, records events in its own FleetModel and flushes
every 100 ms like the dashboard. The run's recorded summary is loaded after subscribing, so events
that happened before the screen opened are not lost; an older event never moves a host back from a
final state.
"""

from __future__ import annotations

import asyncio
from collections import deque

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Log, ProgressBar, Static

from mssp.events import HostOutput, HostStateChanged, RunFinished, RunProgressed
from tui.keys import bindings_for
from tui.model import FleetModel, HostStatus
from tui.screens.base import MsspScreen
from tui.screens.dialogs import ConfirmDialog
from tui.text import neutralise, one_line
from tui.widgets.host_table import HostTable
from tui.widgets.run_table import RunTable

FINAL = frozenset(
    {
        "ok",
        "changed",
        "failed",
        "unreachable",
        "timeout",
        "skipped",
        "cancelled",
        "expired",
        "interrupted",
    }
)
OUTPUT_KEEP = 64 * 1024
"""Characters of live output kept per host on screen (the database keeps the capped whole)."""
COUNT_ORDER = (
    "queued",
    "running",
    "ok",
    "changed",
    "failed",
    "unreachable",
    "timeout",
    "skipped",
    "cancelled",
    "expired",
    "interrupted",
)


class LiveRunScreen(MsspScreen):
    """One run, live."""

    BINDINGS = bindings_for("live_run")

    def __init__(self, run_id: int, hosts: list[str]) -> None:
        super().__init__(name=f"run-{run_id}")
        self.run_id = run_id
        self.host_names = list(hosts)
        self.model = FleetModel()
        self.state = "running"
        self.task_name = ""
        self.counts: dict[str, int] = {}
        self.output: dict[str, deque[str]] = {}
        self._output_size: dict[str, int] = {}
        self.finished = asyncio.Event()
        self._subscribed = asyncio.Event()

    def compose(self) -> ComposeResult:
        yield Static(id="run-title", classes="section-title")
        with Horizontal(id="run-progress-row"):
            yield ProgressBar(total=max(1, len(self.host_names)), id="run-progress", show_eta=False)
            yield Static(id="run-counts", classes="hint")
        with Vertical():
            yield RunTable(self.model, id="run-hosts")
            yield Static("output", id="output-title", classes="section-title")
            yield Log(id="run-output", max_lines=5000, auto_scroll=True)
        yield Footer()

    def on_mount(self) -> None:
        records = self.app.model.records  # type: ignore[attr-defined]
        from mssp.inventory import HostRecord

        run_records = [
            records.get(n) or HostRecord(*n.split("/", 2), address="") for n in self.host_names
        ]
        self.model.load(run_records, {n: HostStatus(last_run="queued") for n in self.host_names})
        self.model.set_sort("last_run")
        self.query_one(RunTable).reload()
        self.query_one(RunTable).focus()
        self.set_interval(0.1, self.flush, name="flush")
        self._update_header()
        self.follow()

    # -- events ----------------------------------------------------------------------------------

    @work(group="follow", exit_on_error=False)
    async def follow(self) -> None:
        """Subscribe first, then load what was recorded, then apply live events."""
        async with self.app.services.bus.subscribe() as queue:  # type: ignore[attr-defined]
            self._subscribed.set()
            await self._load_summary()
            while True:
                event = await queue.get()
                if getattr(event, "run_id", None) != self.run_id:
                    continue
                self.take(event)

    async def _load_summary(self) -> None:
        engine = self.app.services.engine  # type: ignore[attr-defined]
        if engine is None:
            return
        from mssp.engine import load_summary

        summary = await load_summary(self.run_id)
        self.task_name = summary.task
        self.counts = dict(summary.counts)
        for host in summary.hosts:
            if host.host in self.model.rows:
                self.take(
                    HostStateChanged(
                        run_id=self.run_id, host=host.host, state=host.state, message=host.error
                    )
                )
                text = host.stdout + (host.stderr and f"\n{host.stderr}")
                if text and host.host not in self.output:
                    self._append_output(host.host, text)
        if summary.state not in ("queued", "running", "waiting", "cancelling"):
            self.state = summary.state
            self.finished.set()

    def take(self, event: object) -> None:
        if isinstance(event, HostStateChanged):
            row = self.model.rows.get(event.host)
            if row is not None and row.last_run in FINAL and event.state not in FINAL:
                return  # older than what we already show
            self.model.apply(event)
        elif isinstance(event, HostOutput):
            self._append_output(event.host, event.text)
        elif isinstance(event, RunProgressed):
            self.counts = dict(event.counts)
        elif isinstance(event, RunFinished):
            self.counts = dict(event.counts)
            self.state = event.state
            self.finished.set()

    def _append_output(self, host: str, text: str) -> None:
        text = neutralise(text)
        chunks = self.output.setdefault(host, deque())
        chunks.append(text)
        size = self._output_size.get(host, 0) + len(text)
        while size > OUTPUT_KEEP and len(chunks) > 1:
            size -= len(chunks.popleft())
        self._output_size[host] = size
        if host == self.query_one(RunTable).cursor_host:
            self.query_one("#run-output", Log).write(text)

    def flush(self) -> None:
        result = self.model.flush()
        if not result.empty:
            self.query_one(RunTable).rows_changed(result.changed_hosts, reordered=result.reordered)
        self._update_header()

    def _update_header(self) -> None:
        counts = {k: v for k, v in self.counts.items() if v}
        if not counts:  # before the first RunProgressed: count our rows
            for row in self.model.rows.values():
                counts[row.last_run] = counts.get(row.last_run, 0) + 1
        done = sum(v for k, v in counts.items() if k in FINAL)
        title = Text(f"Run {self.run_id}", style="bold")
        if self.task_name:
            title.append(f" · {one_line(self.task_name)}")
        title.append(f" · {len(self.host_names)} hosts · ")
        title.append(self.state, style="bold green" if self.state == "finished" else "bold")
        self.query_one("#run-title", Static).update(title)
        parts = Text()
        for key in COUNT_ORDER:
            if counts.get(key):
                style = "red" if key in ("failed", "unreachable", "timeout", "interrupted") else ""
                parts.append(f"{key} {counts[key]}  ", style=style)
        self.query_one("#run-counts", Static).update(parts)
        self.query_one(ProgressBar).update(progress=done)

    # -- output of the highlighted host --------------------------------------------------------

    def on_host_table_highlighted(self, event: HostTable.Highlighted) -> None:
        log = self.query_one("#run-output", Log)
        log.clear()
        host = event.host
        self.query_one("#output-title", Static).update(
            Text(f"output of {host}" if host else "output")
        )
        if host:
            for chunk in self.output.get(host, ()):
                log.write(chunk)

    def on_host_table_selected(self, event: HostTable.Selected) -> None:
        self.app.open_host(event.host)  # type: ignore[attr-defined]

    def action_move(self, delta: int) -> None:
        table = self.query_one(RunTable)
        table.action_cursor_down() if delta > 0 else table.action_cursor_up()

    # -- actions -------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_cancel_run(self) -> None:
        if self.finished.is_set():
            self.notify(f"run {self.run_id} is already {self.state}", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._cancel()

        self.app.push_screen(
            ConfirmDialog(
                f"Cancel run {self.run_id}?",
                "Queued hosts are cancelled; running hosts get a grace period.",
            ),
            answered,
        )

    @work(group="run-control", exit_on_error=False)
    async def _cancel(self) -> None:
        await self._engine().cancel(self.run_id)
        self.notify(f"cancelling run {self.run_id}")

    def action_retry(self, which: str) -> None:
        self._retry(which)

    @work(group="run-control", exclusive=True, exit_on_error=False)
    async def _retry(self, which: str) -> None:
        new_id = await self._engine().retry(self.run_id, which=[which])
        from mssp.engine import load_summary

        summary = await load_summary(new_id)
        self.app.pop_screen()
        self.app.open_live_run(new_id, [h.host for h in summary.hosts])  # type: ignore[attr-defined]

    def _engine(self):
        engine = self.app.services.engine  # type: ignore[attr-defined]
        if engine is None:
            from mssp.errors import RunError

            raise RunError("no engine is running in this dashboard")
        return engine
