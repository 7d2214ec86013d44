"""Every key binding of the dashboard, each with an id; remapped through Settings.key_bindings.

k9s and lazydocker habits: ``/`` filter, ``:`` command, ``?`` help, ``enter`` drill in, ``esc``
back, ``space`` multi-select. A user remaps a binding in config.toml::

    [keys]
    "run" = "x"
    "table.down" = "j,down"

Unknown ids are a ConfigError naming the known ones, so a typo is never silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from textual.binding import Binding

from mssp.errors import ConfigError


@dataclass(frozen=True)
class KeySpec:
    id: str
    key: str
    """Textual key names, comma separated for alternatives."""
    action: str
    description: str
    scope: str
    """Where it applies: app, dashboard, host_table, host, launcher, live_run, runs, backups,
    backup_history, schedules, audit, help."""
    show: bool = True
    priority: bool = False


KEYS: tuple[KeySpec, ...] = (
    # Everywhere
    KeySpec("help", "question_mark", "help", "Help", "app"),
    KeySpec("command", "colon", "command", "Command", "app"),
    KeySpec("quit", "ctrl+q", "quit", "Quit", "app", priority=True),
    # Dashboard
    KeySpec("filter", "slash", "filter", "Filter", "dashboard"),
    KeySpec("run", "r", "run", "Run on selection", "dashboard"),
    KeySpec("shell", "s", "shell", "Shell", "dashboard"),
    KeySpec("back", "escape", "back", "Back / clear", "dashboard", show=False),
    KeySpec("focus-next", "tab", "focus_next_pane", "Next pane", "dashboard", show=False),
    KeySpec("reload", "ctrl+r", "reload", "Reload", "dashboard", show=False),
    KeySpec("runs", "R", "runs", "Runs", "dashboard"),
    KeySpec("backups", "B", "backups", "Backups", "dashboard"),
    KeySpec("schedules", "S", "schedules", "Schedules", "dashboard"),
    KeySpec("audit", "A", "audit", "Audit", "dashboard"),
    # The hosts table
    KeySpec("table.down", "down,j", "cursor_down", "Down", "host_table", show=False),
    KeySpec("table.up", "up,k", "cursor_up", "Up", "host_table", show=False),
    KeySpec("table.page-down", "pagedown", "page_down", "Page down", "host_table", show=False),
    KeySpec("table.page-up", "pageup", "page_up", "Page up", "host_table", show=False),
    KeySpec("table.first", "home,g", "first", "First", "host_table", show=False),
    KeySpec("table.last", "end,G", "last", "Last", "host_table", show=False),
    KeySpec("drill-in", "enter", "select", "Open", "host_table"),
    KeySpec("mark", "space", "toggle_mark", "Select", "host_table"),
    KeySpec("unmark-all", "U", "clear_marks", "Clear selection", "host_table", show=False),
    KeySpec("sort", "o", "cycle_sort", "Sort", "host_table"),
    KeySpec("sort-reverse", "O", "reverse_sort", "Reverse sort", "host_table", show=False),
    # Host screen
    KeySpec("host.back", "escape", "back", "Back", "host"),
    KeySpec("host.run", "r", "run", "Run on host", "host"),
    KeySpec("host.shell", "s", "shell", "Shell", "host"),
    KeySpec("host.refresh", "ctrl+r", "refresh", "Refresh", "host", show=False),
    # Run launcher
    KeySpec("launcher.start", "ctrl+s", "start", "Start run", "launcher", priority=True),
    KeySpec("launcher.back", "escape", "back", "Cancel", "launcher"),
    # Live run
    KeySpec("live.back", "escape", "back", "Back", "live_run"),
    KeySpec("live.cancel", "c", "cancel_run", "Cancel run", "live_run"),
    KeySpec("live.retry-failed", "f", "retry('failed')", "Retry failed", "live_run"),
    KeySpec("live.retry-unreachable", "u", "retry('unreachable')", "Retry unreachable", "live_run"),
    KeySpec("live.down", "down,j", "move(1)", "Down", "live_run", show=False),
    KeySpec("live.up", "up,k", "move(-1)", "Up", "live_run", show=False),
    # Runs history
    KeySpec("runs.back", "escape", "back", "Back", "runs"),
    KeySpec("runs.refresh", "ctrl+r", "refresh", "Refresh", "runs"),
    # Backups (latest verification per host) and one host's history
    KeySpec("backups.back", "escape", "back", "Back", "backups"),
    KeySpec("backups.problems", "p", "toggle_problems", "Problems only", "backups"),
    KeySpec("backups.verify", "v", "verify", "Verify now", "backups"),
    KeySpec("backups.refresh", "ctrl+r", "refresh", "Refresh", "backups"),
    KeySpec("history.back", "escape", "back", "Back", "backup_history"),
    KeySpec("history.verify", "v", "verify", "Verify now", "backup_history"),
    # Schedules
    KeySpec("schedules.back", "escape", "back", "Back", "schedules"),
    KeySpec("schedules.toggle", "e", "toggle", "Enable/disable", "schedules"),
    KeySpec("schedules.refresh", "ctrl+r", "refresh", "Refresh", "schedules"),
    # Audit log
    KeySpec("audit.back", "escape", "back", "Back", "audit"),
    KeySpec("audit.verify", "v", "verify", "Verify chain", "audit"),
    KeySpec("audit.filter", "slash", "filter", "Filter", "audit"),
    KeySpec("audit.refresh", "ctrl+r", "refresh", "Refresh", "audit"),
    # Help and dialogs
    KeySpec("help.close", "escape,q,question_mark", "dismiss", "Close", "help"),
)

KEY_IDS = frozenset(spec.id for spec in KEYS)


def bindings_for(scope: str) -> list[Binding]:
    """The Textual bindings of one scope, each carrying its id (what the keymap remaps)."""
    return [
        Binding(
            spec.key,
            spec.action,
            spec.description,
            show=spec.show,
            priority=spec.priority,
            id=spec.id,
        )
        for spec in KEYS
        if spec.scope == scope
    ]


def validate_keymap(mapping: Mapping[str, str]) -> dict[str, str]:
    """Check Settings.key_bindings; return it as a Textual keymap (binding id -> keys)."""
    unknown = sorted(set(mapping) - KEY_IDS)
    if unknown:
        raise ConfigError(
            f"[keys]: unknown binding id(s) {', '.join(unknown)}; "
            f"known ids: {', '.join(sorted(KEY_IDS))}"
        )
    bad = sorted(k for k, v in mapping.items() if not v.strip() or " " in v.strip())
    if bad:
        raise ConfigError(f"[keys]: {', '.join(bad)}: a key is a name like 'x' or 'ctrl+x'")
    return {k: v.strip() for k, v in mapping.items()}


def key_for(binding_id: str, keymap: Mapping[str, str]) -> str:
    """The key(s) a binding answers to under ``keymap``, for the help screen."""
    if binding_id in keymap:
        return keymap[binding_id]
    for spec in KEYS:
        if spec.id == binding_id:
            return spec.key
    raise KeyError(binding_id)
