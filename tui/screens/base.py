"""The base of every mssp screen: worker failures go to the app's single error handler."""

from __future__ import annotations

from textual.screen import Screen
from textual.worker import Worker


class MsspScreen(Screen):
    """A screen whose failed workers end in the app's error dialog, not a crash."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.report_worker_state(event.worker)  # type: ignore[attr-defined]
