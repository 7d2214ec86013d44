"""MsspApp: the Textual application. Owns the view model, the event consumer and navigation.

Screens orchestrate and widgets display; the app is the one place that subscribes to the event bus
for the dashboard, turns worker failures into an error dialog (titled from ``MsspError.title``),
applies the user's key remapping, and moves between screens.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref

from textual import work
from textual.app import App, SuspendNotSupported
from textual.worker import Worker, WorkerState

from mssp.errors import MsspError
from mssp.events import HostOutput
from tui.commands import MsspCommands, run_command
from tui.keys import bindings_for, validate_keymap
from tui.model import FleetModel
from tui.screens.command_bar import CommandBar
from tui.screens.dashboard import DashboardScreen
from tui.screens.dialogs import ErrorDialog
from tui.screens.help import HelpScreen
from tui.services import Services


class MsspApp(App[None]):
    """The dashboard application. ``MsspApp(services).run()``."""

    CSS_PATH = "app.tcss"
    TITLE = "mssp"
    BINDINGS = bindings_for("app")
    COMMANDS = App.COMMANDS | {MsspCommands}

    def __init__(self, services: Services) -> None:
        super().__init__()
        self.services = services
        self.model = FleetModel()
        self.keymap = validate_keymap(services.settings.key_bindings) if services.settings else {}
        self._events: asyncio.Queue | None = None
        self._subscribed = asyncio.Event()
        self._drained = asyncio.Event()
        self.events_seen = 0
        self._reported: weakref.WeakSet[Worker] = weakref.WeakSet()

    def on_mount(self) -> None:
        if self.keymap:
            self.set_keymap(self.keymap)
        self.consume_events()
        self.push_screen(DashboardScreen(self.model))

    @property
    def dashboard(self) -> DashboardScreen:
        for screen in self.screen_stack:
            if isinstance(screen, DashboardScreen):
                return screen
        raise LookupError("the dashboard is not on the screen stack")

    # -- events ------------------------------------------------------------------------------------

    @work(group="events", exit_on_error=False)
    async def consume_events(self) -> None:
        """Record every bus event in the model; the dashboard's flush timer folds them in."""
        async with self.services.bus.subscribe() as queue:
            self._events = queue
            self._subscribed.set()
            apply = self.model.apply
            while True:
                event = await queue.get()
                self.events_seen += 1
                if not isinstance(event, HostOutput):
                    apply(event)
                if queue.empty():
                    self._drained.set()

    async def settle(self, timeout: float = 5.0) -> None:
        """Wait until every published event reached the model, then flush it (tests, demo)."""
        async with asyncio.timeout(timeout):
            await self._subscribed.wait()
            if self._events is not None and not self._events.empty():
                self._drained.clear()
                await self._drained.wait()
        with contextlib.suppress(LookupError):
            self.dashboard.flush()
            self.dashboard.write_log()
        for screen in self.screen_stack:
            flush = getattr(screen, "flush", None)
            if flush is not None and not isinstance(screen, DashboardScreen):
                flush()

    # -- the one place worker failures are reported ------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.report_worker_state(event.worker)

    def report_worker_state(self, worker: Worker) -> None:
        if worker.state != WorkerState.ERROR or worker.error is None:
            return
        if worker in self._reported:  # the state change can reach us by more than one route
            return
        self._reported.add(worker)
        self.show_error(worker.error)

    def show_error(self, error: BaseException) -> None:
        if isinstance(error, MsspError):
            self.push_screen(ErrorDialog(error.title, error.message))
        else:
            # Not one of ours: say what it was; the log has the traceback.
            self.log.error(repr(error))
            self.push_screen(ErrorDialog("Unexpected error", f"{type(error).__name__}: {error}"))

    # -- navigation ------------------------------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.keymap))

    def action_command(self) -> None:
        def done(line: str | None) -> None:
            if line:
                run_command(self, line)

        self.push_screen(CommandBar(), done)

    def open_host(self, host: str) -> None:
        from tui.screens.host import HostScreen

        self.push_screen(HostScreen(host))

    def open_launcher(self, targets: list[str], *, task: str = "", target: str = "") -> None:
        from tui.screens.run_launcher import RunLauncherScreen

        self.push_screen(RunLauncherScreen(targets, task=task, target=target))

    def open_runs(self) -> None:
        from tui.screens.runs import RunsScreen

        self.push_screen(RunsScreen())

    def open_backups(self) -> None:
        from tui.screens.backups import BackupsScreen

        self.push_screen(BackupsScreen())

    def open_backup_history(self, host: str) -> None:
        from tui.screens.backups import BackupHistoryScreen

        self.push_screen(BackupHistoryScreen(host))

    def open_schedules(self) -> None:
        from tui.screens.schedules import SchedulesScreen

        self.push_screen(SchedulesScreen())

    def open_audit(self, *, client: str = "", action: str = "", verify: bool = False) -> None:
        from tui.screens.audit import AuditScreen

        screen = AuditScreen(client=client, action=action)
        self.push_screen(screen)
        if verify:
            screen.call_after_refresh(screen.action_verify)

    def open_live_run(self, run_id: int, hosts: list[str]) -> None:
        from tui.screens.live_run import LiveRunScreen

        self.push_screen(LiveRunScreen(run_id, hosts))

    def open_shell(self, host: str) -> None:
        """A shell on the host: the app is suspended and `mssp ssh HOST` gets the terminal."""
        try:
            from mssp.sessions.shell import run_shell_blocking
        except ImportError:
            self.notify(
                f"Interactive shells are not available yet (no mssp.sessions); "
                f"use `mssp ssh {host}` in another terminal.",
                title="Shell",
                severity="warning",
            )
            return
        settings = self.services.settings
        if settings is None:
            self.notify("No settings: shells need the mssp home.", title="Shell", severity="error")
            return
        # FIELD-NOTES §5: a blocking child inside batch_update + suspend is the shape that holds
        # (an async subprocess lets the app repaint into a stopped output and hang), and nothing
        # may escape the suspended block (textual#6692). Events queue meanwhile (coalesced).
        error: BaseException | None = None
        status = None
        try:
            with self.batch_update(), self.suspend():
                try:
                    status = run_shell_blocking(settings, host)
                except Exception as exc:  # reported once the terminal is ours again
                    error = exc
        except SuspendNotSupported:
            self.notify(
                f"This terminal cannot hand over to a shell; use `mssp ssh {host}`.",
                title="Shell",
                severity="warning",
            )
            return
        if error is not None:
            self.show_error(error)
        elif status:
            self.notify(f"shell on {host} ended with status {status}", title="Shell")
