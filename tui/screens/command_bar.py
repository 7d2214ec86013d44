"""The `:` command line (k9s style): a one-line prompt at the bottom; returns what was typed."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Input


class CommandBar(ModalScreen[str | None]):
    """Type a command (`:help`, `:host NAME`, `:run TASK TARGET`, `:q`...), enter to run it."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="command.cancel")]
    DEFAULT_CSS = """
    CommandBar { align: left bottom; background: $background 40%; }
    CommandBar Input { dock: bottom; width: 100%; border: tall $accent; }
    """

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder=":help  :host NAME  :run TASK TARGET  :filter TEXT  :sort KEY  :q",
            id="command",
        )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip().lstrip(":"))
