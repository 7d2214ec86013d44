"""The run launcher: a task, its parameters (validated as typed), a target with a live preview of
the hosts it matches, check mode, waves and limits; a confirmation before destructive or large runs.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.timer import Timer
from textual.widgets import Button, Footer, Input, Label, Select, Static, Switch

from mssp.engine import RunOptions, load_summary, parse_duration
from mssp.errors import MsspError, UsageError
from mssp.inventory import select
from mssp.tasks import Param, Task, all_tasks
from tui.keys import bindings_for
from tui.screens.base import MsspScreen
from tui.screens.dialogs import ConfirmDialog
from tui.text import one_line

LARGE_TARGET = 25
"""Runs over more hosts than this ask for confirmation even when the task is harmless."""
PREVIEW_NAMES = 12
PREVIEW_DELAY = 0.15
DEFAULT_TASKS = ("command", "facts")


def _default_text(param: Param) -> str:
    if param.required or param.default is None:
        return ""
    if isinstance(param.default, list):
        return ",".join(param.default)
    return str(param.default)


class RunLauncherScreen(MsspScreen):
    """Choose what to run where. Emits nothing: it starts the run and opens the live run screen."""

    BINDINGS = bindings_for("launcher")

    def __init__(self, targets: list[str], *, task: str = "", target: str = "") -> None:
        super().__init__(name="launcher")
        self.tasks: dict[str, type[Task]] = all_tasks()
        # Never a destructive task by default (the first by name is accounts.disable): the
        # everyday one, a command, unless the caller chose.
        fallback = next((t for t in DEFAULT_TASKS if t in self.tasks), next(iter(self.tasks), ""))
        self.initial_task = task if task in self.tasks else fallback
        self.task_given = task in self.tasks
        self.initial_target = target or ",".join(targets)
        self.matched: list[str] = []
        self.param_errors: dict[str, str] = {}
        self.option_error = ""
        self.target_error = ""
        self._preview_timer: Timer | None = None
        self._shown_task: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("Run a task", classes="section-title")
        with Horizontal():
            with VerticalScroll(id="launcher-form"):
                yield Label("Task")
                yield Select(
                    [(f"{name} — {cls.summary}", name) for name, cls in self.tasks.items()],
                    value=self.initial_task or Select.BLANK,
                    allow_blank=not self.tasks,
                    id="task",
                )
                yield Static(id="task-help", classes="hint")
                yield Vertical(id="params")
                yield Label("Target (client:acme,tag:web&!db*, host globs, full names)")
                yield Input(self.initial_target, id="target")
                with Horizontal(classes="options-row"):
                    yield Label("Check mode (plan only)")
                    yield Switch(False, id="check")
                    yield Label("Canary wave")
                    yield Switch(False, id="canary")
                yield Label(
                    "Waves and limits: batch (N or N%) · max-fail % · forks · per client · "
                    "per-host timeout · limit (an expression)"
                )
                with Horizontal(classes="options-row"):
                    yield Input(placeholder="batch: all", id="batch")
                    yield Input(placeholder="max-fail %", id="max_fail")
                    yield Input(placeholder="forks", id="forks")
                    yield Input(placeholder="per client", id="per_client")
                    yield Input(placeholder="timeout 10m", id="timeout")
                    yield Input(placeholder="limit", id="limit")
                yield Static(id="options-error", classes="error-text")
                yield Button("Start run (ctrl+s)", variant="primary", id="start")
            with VerticalScroll(id="launcher-preview"):
                yield Static(id="preview")
        yield Footer()

    async def on_mount(self) -> None:
        if not self.tasks:
            self.query_one("#task-help", Static).update("No task is registered (mssp.tasks).")
        await self._show_params(self.initial_task)
        self._preview()
        self._first_focus()

    def _first_focus(self) -> None:
        """Where the user types first: the task, unless the caller chose it; then the first
        empty parameter, the target when empty, else the start button."""
        if not self.task_given or not self.initial_task:
            self.query_one("#task").focus()
            return
        empty = [i for i in self.query_one("#params").query(Input) if not i.value]
        if empty:
            empty[0].focus()
        elif not self.query_one("#target", Input).value:
            self.query_one("#target").focus()
        else:
            self.query_one("#start").focus()

    # -- task and parameters -----------------------------------------------------------------------

    @on(Select.Changed, "#task")
    async def _task_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            await self._show_params(event.value)

    async def _show_params(self, name: str) -> None:
        if name == self._shown_task:
            return
        self._shown_task = name
        box = self.query_one("#params", Vertical)
        await box.remove_children()
        self.param_errors.clear()
        cls = self.tasks.get(name)
        if cls is None:
            return
        note = " · destructive: asks before applying" if cls.destructive else ""
        self.query_one("#task-help", Static).update(Text(f"{cls.summary}{note}"))
        widgets = []
        for param in cls.params:
            required = " (required)" if param.required else ""
            choices = f" [{', '.join(map(str, param.choices))}]" if param.choices else ""
            widgets.append(Label(f"{param.name}{required}{choices}: {param.help}"))
            if param.type is bool:
                widgets.append(
                    Switch(
                        bool(param.default) if not param.required else False,
                        id=f"param-{param.name}",
                    )
                )
            else:
                widgets.append(Input(_default_text(param), id=f"param-{param.name}"))
            widgets.append(Static(id=f"error-{param.name}", classes="error-text"))
            if param.required:
                self.param_errors[param.name] = "required"
        await box.mount_all(widgets)

    def _param_values(self) -> dict[str, Any]:
        cls = self.tasks[self._task_name()]
        values: dict[str, Any] = {}
        for param in cls.params:
            widget = self.query_one(f"#param-{param.name}")
            if isinstance(widget, Switch):
                values[param.name] = widget.value
            elif isinstance(widget, Input) and (widget.value or param.required):
                values[param.name] = widget.value
        return values

    def _task_name(self) -> str:
        value = self.query_one("#task", Select).value
        return value if isinstance(value, str) else ""

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        wid = event.input.id or ""
        if wid.startswith("param-"):
            self._check_param(wid.removeprefix("param-"), event.value)
        elif wid in ("target", "limit"):
            if self._preview_timer is not None:
                self._preview_timer.stop()
            self._preview_timer = self.set_timer(PREVIEW_DELAY, self._preview)
            if wid == "limit":
                self._check_options()
        else:
            self._check_options()

    def _check_param(self, name: str, raw: str) -> None:
        cls = self.tasks.get(self._task_name())
        param = next((p for p in cls.params if p.name == name), None) if cls else None
        if param is None:
            return
        try:
            if raw or param.required:
                param.coerce(raw)
            self.param_errors.pop(name, None)
            message = ""
        except MsspError as exc:
            self.param_errors[name] = message = exc.message
        self.query_one(f"#error-{name}", Static).update(message)

    def _options(self) -> RunOptions:
        def text(wid: str) -> str:
            return self.query_one(f"#{wid}", Input).value.strip()

        def number(wid: str, kind: type) -> Any:
            raw = text(wid)
            if not raw:
                return None
            try:
                return kind(raw.rstrip("%"))
            except ValueError:
                raise UsageError(f"{wid.replace('_', '-')} must be a number, not {raw!r}") from None

        timeout = text("timeout")
        return RunOptions(
            batch=text("batch") or None,
            max_fail=number("max_fail", float),
            forks=number("forks", int),
            per_client=number("per_client", int),
            limit=text("limit") or None,
            timeout=parse_duration(timeout, "timeout") if timeout else None,
            canary=self.query_one("#canary", Switch).value,
            check=self.query_one("#check", Switch).value,
        )

    def _check_options(self) -> RunOptions | None:
        try:
            options = self._options()
            self.option_error = ""
        except MsspError as exc:
            options, self.option_error = None, exc.message
        self.query_one("#options-error", Static).update(self.option_error)
        return options

    # -- target preview ----------------------------------------------------------------------------

    def _preview(self) -> None:
        expression = self.query_one("#target", Input).value.strip()
        records = list(self.app.model.records.values())  # type: ignore[attr-defined]
        preview = self.query_one("#preview", Static)
        if not expression:
            self.matched, self.target_error = [], "type a target expression"
            preview.update(Text("No target yet.", style="dim"))
            return
        limit = self.query_one("#limit", Input).value.strip()
        try:
            chosen = select(expression, records)
            if limit:
                chosen = select(limit, chosen)
            self.matched = [r.full_name for r in chosen]
            self.target_error = ""
        except MsspError as exc:
            self.matched, self.target_error = [], exc.message
            preview.update(Text(one_line(exc.message), style="red"))
            return
        text = Text(f"{len(self.matched)} of {len(records)} hosts match\n", style="bold")
        for name in self.matched[:PREVIEW_NAMES]:
            text.append(f"  {one_line(name)}\n")
        if len(self.matched) > PREVIEW_NAMES:
            text.append(f"  … and {len(self.matched) - PREVIEW_NAMES} more\n", style="dim")
        preview.update(text)

    # -- start -------------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.pop_screen()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            event.stop()
            self.action_start()

    def action_start(self) -> None:
        if self._preview_timer is not None:
            self._preview_timer.stop()
        self._preview()
        options = self._check_options()
        name = self._task_name()
        problems = []
        if not name:
            problems.append("choose a task")
        problems += [f"{k}: {v}" for k, v in self.param_errors.items()]
        if self.target_error:
            problems.append(f"target: {self.target_error}")
        elif not self.matched:
            problems.append("the target matches no host")
        if options is None:
            problems.append(self.option_error)
        if problems:
            self.notify("\n".join(problems), title="Cannot start", severity="error")
            return
        assert options is not None
        params = self._param_values()
        cls = self.tasks[name]
        reasons = []
        if cls.destructive and not options.check:
            reasons.append(f"{name} is destructive")
        if len(self.matched) > LARGE_TARGET:
            reasons.append(f"it targets {len(self.matched)} hosts")
        target = self.query_one("#target", Input).value.strip()
        if not reasons:
            self._start(name, target, params, options)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._start(name, target, params, options)

        self.app.push_screen(
            ConfirmDialog(
                f"Run {name} on {len(self.matched)} hosts?",
                " and ".join(reasons).capitalize() + ".\nTarget: " + target,
                yes="Run it (y)",
            ),
            answered,
        )

    @work(exclusive=True, group="start", exit_on_error=False)
    async def _start(self, task: str, target: str, params: dict, options: RunOptions) -> None:
        engine = self.app.services.engine  # type: ignore[attr-defined]
        if engine is None:
            raise UsageError("runs cannot be started: no engine in this dashboard", title="Run")
        run_id = await engine.start_run(task, target, params=params, options=options)
        # The run's own record says which hosts it has (the engine selected them).
        summary = await load_summary(run_id)
        hosts = [h.host for h in summary.hosts]
        self.app.pop_screen()
        self.app.open_live_run(run_id, hosts)  # type: ignore[attr-defined]
