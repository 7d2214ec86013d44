"""Fixtures of the dashboard tests: no animation or cursor blink (deterministic frames), fleets."""

from __future__ import annotations

import pytest
from textual import constants
from textual.reactive import reactive
from textual.widgets import Input


@pytest.fixture(autouse=True)
def _still_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "TEXTUAL_ANIMATIONS", "none")
    blink = reactive(False, init=False)
    blink.__set_name__(Input, "cursor_blink")
    monkeypatch.setattr(Input, "cursor_blink", blink)
