"""The per-host rows of one run: the hosts table with the run's columns (state, why)."""

from __future__ import annotations

from rich.style import Style

from tui.model import PROBLEM_STATES, HostRow
from tui.widgets.host_table import Column, HostTable

RUN_COLUMNS = (
    Column("name", "HOST", 0),
    Column("client", "CLIENT/SITE", 22),
    Column("last_run", "STATE", 12),
    Column("status", "REACHED", 8),
    Column("last_seen", "MESSAGE", 60),
)
_GOOD = frozenset({"ok", "changed", "skipped"})


class RunTable(HostTable):
    """Rows of a run's FleetModel: ``last_run`` is the host's state in this run."""

    COLUMNS = RUN_COLUMNS

    def cells(self, row: HostRow) -> tuple[tuple[str, Style], ...]:
        base = self.rich_style
        if row.last_run in PROBLEM_STATES:
            state_style = self._style("problem")
        elif row.last_run in _GOOD:
            state_style = self._style("up")
        else:
            state_style = self._style("dim")
        return (
            (row.name, base),
            (f"{row.client}/{row.site}", self._style("dim")),
            (row.last_run or "queued", state_style),
            (row.status, self._style("dim")),
            (row.note, base),
        )
