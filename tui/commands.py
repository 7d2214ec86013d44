"""Commands: the `:` command line and the command palette (ctrl+p) share these actions."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tui.model import SORT_KEYS

if TYPE_CHECKING:
    from tui.app import MsspApp

PALETTE_HOST_LIMIT = 50


@dataclass(frozen=True)
class CommandSpec:
    name: str
    aliases: tuple[str, ...]
    usage: str
    help: str


COMMANDS = (
    CommandSpec("help", ("h", "?"), ":help", "List every key and command"),
    CommandSpec("quit", ("q", "q!"), ":q", "Quit mssp"),
    CommandSpec("hosts", ("dash", "dashboard"), ":hosts", "Back to the dashboard"),
    CommandSpec("host", (), ":host CLIENT/SITE/HOST", "Open a host"),
    CommandSpec("run", (), ":run [TASK] [TARGET]", "Launch a run (target: an expression)"),
    CommandSpec("filter", ("f",), ":filter TEXT", "Filter the hosts table"),
    CommandSpec("client", (), ":client SLUG", "Show one client's hosts (no slug: all)"),
    CommandSpec("sort", (), ":sort KEY [desc]", "Sort by " + ", ".join(SORT_KEYS)),
    CommandSpec("reload", (), ":reload", "Reload the fleet from the database"),
    CommandSpec("runs", ("history",), ":runs", "Recent runs, whoever started them"),
    CommandSpec("backups", ("b",), ":backups [HOST]", "Latest backup verification per host"),
    CommandSpec("schedules", ("sched",), ":schedules", "Schedules the daemon runs"),
    CommandSpec(
        "audit",
        (),
        ":audit [client:SLUG] [ACTION]",
        "The audit log, filtered by client and action prefix",
    ),
    CommandSpec("verify-audit", ("verify",), ":verify-audit", "Verify the audit hash chain"),
    CommandSpec(
        "screenshot", ("shot",), ":screenshot [FILE.svg]", "Save the screen as SVG (default: ~)"
    ),
)


def _lookup(word: str) -> CommandSpec | None:
    for spec in COMMANDS:
        if word == spec.name or word in spec.aliases:
            return spec
    return None


def run_command(app: MsspApp, line: str) -> None:
    """Execute one `:` command line; a bad one is reported, nothing else happens."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        app.notify(f"cannot parse {line!r}: {exc}", severity="error", title="Command")
        return
    if not words:
        return
    spec = _lookup(words[0].lower())
    if spec is None:
        app.notify(f"unknown command {words[0]!r}; try :help", severity="error", title="Command")
        return
    args = words[1:]
    dashboard = app.dashboard
    if spec.name == "help":
        app.action_help()
    elif spec.name == "quit":
        app.exit()
    elif spec.name == "hosts":
        while app.screen is not dashboard and len(app.screen_stack) > 1:
            app.pop_screen()
    elif spec.name == "host":
        if len(args) != 1 or args[0] not in app.model.rows:
            app.notify(f"usage: {spec.usage} (a known host)", severity="error", title="Command")
            return
        app.open_host(args[0])
    elif spec.name == "run":
        task = args[0] if args else ""
        target = ",".join(args[1:])
        app.open_launcher(dashboard.targets() if not target else [], task=task, target=target)
    elif spec.name == "filter":
        dashboard.set_filter(" ".join(args))
    elif spec.name == "client":
        app.model.set_scope(args[0] if args else None)
        dashboard.refresh_all()
    elif spec.name == "sort":
        if not args or args[0] not in SORT_KEYS:
            app.notify(f"usage: {spec.usage}", severity="error", title="Command")
            return
        app.model.set_sort(args[0], reverse=len(args) > 1 and args[1] == "desc")
        dashboard.refresh_all()
    elif spec.name == "reload":
        dashboard.load()
    elif spec.name == "runs":
        app.open_runs()
    elif spec.name == "backups":
        if args:
            app.open_backup_history(args[0])
        else:
            app.open_backups()
    elif spec.name == "schedules":
        app.open_schedules()
    elif spec.name == "screenshot":
        save_screenshot(app, args[0] if args else "")
    elif spec.name in ("audit", "verify-audit"):
        client = next((a.split(":", 1)[1] for a in args if a.startswith("client:")), "")
        action = next((a for a in args if not a.startswith("client:")), "")
        app.open_audit(client=client, action=action, verify=spec.name == "verify-audit")


def save_screenshot(app: MsspApp, target: str) -> None:
    """Save the screen as it is once the command line has gone (an SVG; README screenshots)."""
    import time
    from pathlib import Path

    path = Path(target or f"~/mssp-{time.strftime('%Y%m%d-%H%M%S')}.svg").expanduser()
    if path.suffix.lower() != ".svg":
        app.notify(f"{path}: a screenshot is an .svg file", severity="error", title="Screenshot")
        return

    def save() -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            saved = app.save_screenshot(filename=path.name, path=str(path.parent))
        except OSError as exc:
            app.notify(f"cannot save {path}: {exc.strerror}", severity="error", title="Screenshot")
            return
        app.notify(f"saved {saved}", title="Screenshot")

    app.call_after_refresh(save)


class MsspCommands(Provider):
    """The command palette: every `:` command, and a jump to any host by name."""

    def _entries(self) -> list[tuple[str, str, Callable[[], None]]]:
        app: MsspApp = self.app  # type: ignore[assignment]
        return [
            ("Help: keys and commands", "?", app.action_help),
            ("Run a task on the selection", "r", lambda: app.dashboard.action_run()),
            ("Filter hosts", "/", lambda: app.dashboard.action_filter()),
            ("Show hosts that are down", "", lambda: app.dashboard.set_filter("status:down")),
            (
                "Show hosts whose last run failed",
                "",
                lambda: app.dashboard.set_filter("run:failed"),
            ),
            ("Clear filter and scope", "esc", lambda: run_command(app, "client")),
            ("Reload the fleet", "ctrl+r", lambda: app.dashboard.load()),
            ("Runs history", "R", app.open_runs),
            ("Backups: latest verification per host", "B", app.open_backups),
            ("Schedules", "S", app.open_schedules),
            ("Audit log", "A", app.open_audit),
            ("Verify the audit chain", ":verify-audit", partial(app.open_audit, verify=True)),
        ]

    async def discover(self) -> Hits:
        for title, key, callback in self._entries():
            yield DiscoveryHit(title, callback, help=f"key: {key}" if key else None)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, key, callback in self._entries():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=key or None)
        app: MsspApp = self.app  # type: ignore[assignment]
        shown = 0
        for name in app.model.rows:  # plain substring first: 10k fuzzy matches are too slow
            if query.lower() in name.lower():
                yield Hit(
                    0.5,
                    matcher.highlight(f"Open host {name}"),
                    partial(app.open_host, name),
                    help="host",
                )
                shown += 1
                if shown >= PALETTE_HOST_LIMIT:
                    break
