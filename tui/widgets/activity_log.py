"""The activity log: what happened recently (runs, failures, agents), newest at the bottom."""

from __future__ import annotations

import time
from collections.abc import Iterable

from textual.widgets import Log

from tui.model import LogLine
from tui.text import one_line

_MARK = {"info": " ", "warning": "!", "error": "✗"}


class ActivityLog(Log):
    """A bounded log of LogLines. Text is neutralised here, whatever the caller did."""

    DEFAULT_CSS = """
    ActivityLog { height: 8; border-top: solid $panel-lighten-2; }
    """

    def __init__(self, *, max_lines: int = 2000, id: str | None = None) -> None:
        super().__init__(max_lines=max_lines, id=id, auto_scroll=True)

    def add(self, lines: Iterable[LogLine]) -> None:
        text = [
            f"{time.strftime('%H:%M:%S', time.localtime(line.at))} "
            f"{_MARK.get(line.level, ' ')} {one_line(line.text)}"
            for line in lines
        ]
        if text:
            self.write_lines(text)
