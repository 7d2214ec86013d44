"""The help screen: every key (as remapped by the user) and every `:` command."""

from __future__ import annotations

from collections.abc import Mapping

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.commands import COMMANDS
from tui.keys import KEYS, bindings_for, key_for

SCOPE_TITLES = {
    "app": "Everywhere",
    "dashboard": "Dashboard",
    "host_table": "Hosts table",
    "host": "Host screen",
    "launcher": "Run launcher",
    "live_run": "Live run",
    "runs": "Runs history",
    "backups": "Backups",
    "backup_history": "Backup history",
    "schedules": "Schedules",
    "audit": "Audit log",
    "help": "This help",
}


def _pretty(keys: str) -> str:
    names = {"question_mark": "?", "colon": ":", "slash": "/", "escape": "esc", "space": "space"}
    return ", ".join(names.get(k, k) for k in keys.split(","))


class HelpScreen(ModalScreen[None]):
    """Lists bindings with their ids (the names to use under [keys] in config.toml)."""

    BINDINGS = bindings_for("help")
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 96; height: 90%; border: thick $accent; background: $surface; padding: 0 1;
    }
    """

    def __init__(self, keymap: Mapping[str, str]) -> None:
        super().__init__()
        self.keymap = keymap

    def compose(self) -> ComposeResult:
        keys = Table(title=Text('Keys  (remap in config.toml: [keys] "id" = "key")'), expand=True)
        keys.add_column("Where")
        keys.add_column("Key", style="bold")
        keys.add_column("What")
        keys.add_column("Id", style="dim")
        for spec in KEYS:
            keys.add_row(
                SCOPE_TITLES[spec.scope],
                _pretty(key_for(spec.id, self.keymap)),
                spec.description,
                spec.id,
            )
        keys.add_row("Everywhere", "ctrl+p", "Command palette", "(textual)")
        commands = Table(title="Commands  (press : then type)", expand=True)
        commands.add_column("Command", style="bold")
        commands.add_column("What")
        for cmd in COMMANDS:
            commands.add_row(cmd.usage, cmd.help)
        with VerticalScroll():
            yield Static(keys)
            yield Static(commands)
            yield Static(
                "Filter syntax: words match host, client/site, OS, address, tags; "
                "field:value for client site os via status tag run backup; ! negates.\n"
                "Target expressions (run launcher): client:acme,tag:web&!db* (see docs)."
            )

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss()
