"""Modal dialogs: an error titled from the error, and a confirmation before anything destructive."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from tui.text import safe_text


class ErrorDialog(ModalScreen[None]):
    """Shows one error. Its title is the error's ``title`` (MsspError.title)."""

    BINDINGS = [Binding("escape,enter", "dismiss", "Close", id="error.close")]
    DEFAULT_CSS = """
    ErrorDialog { align: center middle; }
    ErrorDialog > Vertical {
        width: 72; height: auto; max-height: 80%; padding: 1 2;
        border: thick $error; background: $surface;
    }
    ErrorDialog #title { text-style: bold; color: $error; }
    ErrorDialog #message { margin: 1 0; }
    """

    def __init__(self, title: str, message: str) -> None:
        super().__init__()
        self.title_text, self.message = title, message

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(safe_text(self.title_text), id="title")
            yield Static(safe_text(self.message), id="message")
            yield Button("Close", variant="error", id="close")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss()


class ConfirmDialog(ModalScreen[bool]):
    """Asks before something destructive or large. Dismisses with True only on an explicit yes."""

    BINDINGS = [
        Binding("escape,n", "answer(False)", "No", id="confirm.no"),
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
    ]
    DEFAULT_CSS = """
    ConfirmDialog { align: center middle; }
    ConfirmDialog > Vertical {
        width: 72; height: auto; padding: 1 2; border: thick $warning; background: $surface;
    }
    ConfirmDialog #title { text-style: bold; color: $warning; }
    ConfirmDialog #message { margin: 1 0; }
    ConfirmDialog Horizontal { height: auto; }
    ConfirmDialog Button { margin-right: 2; }
    """

    def __init__(self, title: str, message: str, *, yes: str = "Yes (y)") -> None:
        super().__init__()
        self.title_text, self.message, self.yes = title, message, yes

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, id="title")
            yield Static(safe_text(self.message), id="message")
            with Horizontal():
                yield Button(self.yes, variant="warning", id="yes")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # the safe answer is the default

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
