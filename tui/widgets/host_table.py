"""The hosts table: a Line-API widget over FleetModel that paints only visible rows, from a cache.

Textual's DataTable clears its render caches on every cell update and cannot keep up with a fleet
run (FIELD-NOTES.md §5). Here the model is plain Python; the widget renders a line per visible row,
caches each rendered line under the row's version, and repaints only when told rows changed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual.events import Click
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.keys import bindings_for
from tui.model import DOWN, PROBLEM_STATES, UP, FleetModel, HostRow


@dataclass(frozen=True)
class Column:
    key: str
    """The sort key this column sorts by."""
    title: str
    width: int


COLUMNS = (
    Column("name", "HOST", 0),  # width 0: takes what the others leave
    Column("client", "CLIENT/SITE", 22),
    Column("os", "OS", 10),
    Column("via", "VIA", 7),
    Column("status", "STATUS", 8),
    Column("last_seen", "SEEN", 6),
    Column("updates", "UPD", 5),
    Column("backup", "BACKUP", 12),
    Column("last_run", "LAST RUN", 12),
)
MARK_WIDTH = 2
MIN_NAME_WIDTH = 16
MAX_NAME_WIDTH = 40


def format_age(seconds: float | None) -> str:
    """A compact age: 42s, 5m, 3h, 12d; "-" when never seen."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def fit(text: str, width: int) -> str:
    """Pad or cut ``text`` to exactly ``width`` cells, marking a cut with an ellipsis."""
    if width <= 0:
        return ""
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…"
    return set_cell_size(text, width)


class HostTable(ScrollView, can_focus=True):
    """Hosts of a FleetModel: cursor, multi-selection, sort; the screen says when rows changed."""

    BINDINGS = bindings_for("host_table")
    COMPONENT_CLASSES = {
        "host-table--header",
        "host-table--cursor",
        "host-table--selected",
        "host-table--up",
        "host-table--down",
        "host-table--unknown",
        "host-table--problem",
        "host-table--dim",
    }
    DEFAULT_CSS = """
    HostTable { height: 1fr; }
    HostTable > .host-table--header { text-style: bold; background: $panel; }
    HostTable > .host-table--cursor { background: $accent 40%; }
    HostTable:focus > .host-table--cursor { background: $accent; }
    HostTable > .host-table--selected { text-style: bold; color: $warning; }
    HostTable > .host-table--up { color: $success; }
    HostTable > .host-table--down { color: $error; text-style: bold; }
    HostTable > .host-table--unknown { color: $text-muted; }
    HostTable > .host-table--problem { color: $error; }
    HostTable > .host-table--dim { color: $text-muted; }
    """

    COLUMNS: tuple[Column, ...] = COLUMNS
    cursor = reactive(0, always_update=False, repaint=False)

    class Highlighted(Message):
        """The cursor moved to another host (None: the table is empty)."""

        def __init__(self, table: HostTable, host: str | None) -> None:
            super().__init__()
            self.table, self.host = table, host

    class Selected(Message):
        """Enter was pressed on a host: drill in."""

        def __init__(self, table: HostTable, host: str) -> None:
            super().__init__()
            self.table, self.host = table, host

    class SelectionChanged(Message):
        """The multi-selection changed."""

        def __init__(self, table: HostTable, hosts: frozenset[str]) -> None:
            super().__init__()
            self.table, self.hosts = table, hosts

    def __init__(self, model: FleetModel, *, name: str | None = None, id: str | None = None):
        super().__init__(name=name, id=id)
        self.model = model
        self._cursor_key: str | None = None
        self._cache: dict[tuple, Strip] = {}
        self._clock = int(time.time())
        self._widths: list[int] = []
        self._layout_width = -1
        self.render_count = 0
        """Lines rendered (not from cache); the benchmark and tests read it."""

    # -- public API used by the screen -----------------------------------------------------------

    @property
    def cursor_host(self) -> str | None:
        order = self.model.order
        return order[self.cursor] if 0 <= self.cursor < len(order) else None

    def rows_changed(self, hosts: frozenset[str] | set[str], *, reordered: bool) -> None:
        """The model changed these rows (and maybe their order): repaint what is visible."""
        if reordered:
            self.reload()
            return
        top = int(self.scroll_y)
        bottom = top + max(0, self.size.height - 1)
        index = self.model.index_of
        lines = [i for h in hosts if (i := index(h)) is not None and top <= i < bottom]
        if not lines:
            return
        # One region covering the changed visible rows: unchanged lines come from the cache.
        first, last = min(lines), max(lines)
        self.refresh_lines(first + 1, last - first + 1)

    def reload(self) -> None:
        """The order changed (filter, sort, scope, reload): keep the cursor on the same host."""
        self._cache.clear()
        self._update_virtual_size()
        count = len(self.model.order)
        new = self.model.index_of(self._cursor_key) if self._cursor_key else None
        if new is None:
            new = min(self.cursor, max(0, count - 1))
        self._set_cursor(new, force=True)
        self.refresh()

    def tick(self) -> None:
        """Called every few seconds: relative ages ("5m") must move on."""
        self._clock = int(time.time())
        self._cache.clear()
        self.refresh()

    # -- layout ------------------------------------------------------------------------------------

    def _update_virtual_size(self) -> None:
        width = max(self.size.width, self._min_width())
        self.virtual_size = Size(width, len(self.model.order) + 1)

    def _min_width(self) -> int:
        return MARK_WIDTH + MIN_NAME_WIDTH + sum(c.width + 1 for c in self.COLUMNS[1:])

    def _column_widths(self, width: int) -> list[int]:
        if width != self._layout_width:
            fixed = sum(c.width + 1 for c in self.COLUMNS[1:])
            name = min(MAX_NAME_WIDTH, max(MIN_NAME_WIDTH, width - MARK_WIDTH - fixed))
            self._widths = [name] + [c.width for c in self.COLUMNS[1:]]
            self._layout_width = width
        return self._widths

    def on_resize(self) -> None:
        self._cache.clear()
        self._update_virtual_size()
        self._scroll_cursor_into_view()

    def on_mount(self) -> None:
        self._update_virtual_size()
        self._set_cursor(0, force=True)

    # -- rendering ---------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.virtual_size.width
        scroll_x = int(self.scroll_x)
        if y == 0:
            strip = self._render_header(width)
        else:
            index = int(self.scroll_y) + y - 1
            order = self.model.order
            if index >= len(order):
                return Strip.blank(self.size.width, self.rich_style)
            key = order[index]
            row = self.model.rows[key]
            is_cursor = index == self.cursor
            is_selected = key in self.model.selected
            cache_key = (key, row.version, is_cursor, is_selected, width, self._clock)
            strip = self._cache.get(cache_key)
            if strip is None:
                if len(self._cache) > 4 * max(self.size.height, 10):
                    self._cache.clear()
                strip = self._render_row(row, width, is_cursor, is_selected)
                self._cache[cache_key] = strip
                self.render_count += 1
        return strip.crop(scroll_x, scroll_x + self.size.width)

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(f"host-table--{name}")

    def _render_header(self, width: int) -> Strip:
        widths = self._column_widths(width)
        style = self._style("header")
        arrow = "▼" if self.model.sort_reverse else "▲"
        parts = [" " * MARK_WIDTH]
        for column, w in zip(self.COLUMNS, widths, strict=True):
            title = column.title + (arrow if column.key == self.model.sort_key else "")
            parts.append(fit(title, w))
        text = " ".join(parts).rstrip()
        count = f" {len(self.model.order)}/{len(self.model.rows)} "
        if len(self.model.selected):
            count = f" {len(self.model.selected)} selected ·" + count
        if cell_len(text) + len(count) <= width:  # the counts only where no title is hidden
            text = fit(text, width - len(count)) + count
        return Strip([Segment(fit(text, width), style)], width)

    def cells(self, row: HostRow) -> tuple[tuple[str, Style], ...]:
        """The text and style of each column for ``row`` (subclasses show other columns)."""
        base = self.rich_style
        dim = self._style("dim")
        status_style = self._style(
            "up" if row.status == UP else "down" if row.status == DOWN else "unknown"
        )
        run_style = self._style("problem") if row.last_run in PROBLEM_STATES else base
        backup_style = (
            self._style("problem")
            if row.backup_state and row.backup_state != "VERIFIED"
            else (self._style("up") if row.backup_state else dim)
        )
        seen = format_age(self._clock - row.last_seen if row.last_seen else None)
        updates = "-" if row.pending_updates is None else str(row.pending_updates)
        return (
            (row.name, base),
            (f"{row.client}/{row.site}", dim),
            (row.os or "-", base),
            (row.via, dim),
            (row.status, status_style),
            (seen, dim),
            (updates, self._style("problem") if row.pending_updates else dim),
            (row.backup_state or "-", backup_style),
            (row.last_run or "-", run_style),
        )

    def _render_row(self, row: HostRow, width: int, is_cursor: bool, is_selected: bool) -> Strip:
        widths = self._column_widths(width)
        base = self.rich_style
        mark = "● " if is_selected else "  "
        mark_style = self._style("selected") if is_selected else base
        segments = [Segment(mark, mark_style)]
        for (text, style), w in zip(self.cells(row), widths, strict=True):
            segments.append(Segment(fit(text, w), style))
            segments.append(Segment(" ", base))
        strip = Strip(segments).adjust_cell_length(width, base)
        if is_selected:
            strip = strip.apply_style(self._style("selected"))
        if is_cursor:
            strip = strip.apply_style(self._style("cursor"))
        return strip

    # -- cursor and keys --------------------------------------------------------------------------

    def _set_cursor(self, index: int, *, force: bool = False) -> None:
        count = len(self.model.order)
        index = max(0, min(index, count - 1)) if count else 0
        old = self.cursor
        old_key = self._cursor_key
        self.cursor = index
        self._cursor_key = self.cursor_host
        if index != old or force:
            # Rows are cached with their cursor flag, so only the two rows need repainting.
            if old != index:
                self.refresh_lines(old + 1, 1)
            self.refresh_lines(index + 1, 1)
            self._scroll_cursor_into_view()
        if self._cursor_key != old_key or force:
            self.post_message(self.Highlighted(self, self._cursor_key))

    def _scroll_cursor_into_view(self) -> None:
        visible = max(1, self.size.height - 1)
        top = int(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False, immediate=True)

    def action_cursor_down(self) -> None:
        self._set_cursor(self.cursor + 1)

    def action_cursor_up(self) -> None:
        self._set_cursor(self.cursor - 1)

    def action_page_down(self) -> None:
        self._set_cursor(self.cursor + max(1, self.size.height - 2))

    def action_page_up(self) -> None:
        self._set_cursor(self.cursor - max(1, self.size.height - 2))

    def action_first(self) -> None:
        self._set_cursor(0)

    def action_last(self) -> None:
        self._set_cursor(len(self.model.order) - 1)

    def action_select(self) -> None:
        host = self.cursor_host
        if host is not None:
            self.post_message(self.Selected(self, host))

    def action_toggle_mark(self) -> None:
        host = self.cursor_host
        if host is None:
            return
        self.model.toggle_selected(host)
        self.refresh(Region(0, 0, self.size.width, 1))  # the header counts the selection
        self._set_cursor(self.cursor + 1, force=True)
        self.post_message(self.SelectionChanged(self, frozenset(self.model.selected)))

    def action_clear_marks(self) -> None:
        if self.model.selected:
            self.model.selected.clear()
            self._cache.clear()
            self.refresh()
            self.post_message(self.SelectionChanged(self, frozenset()))

    def action_cycle_sort(self) -> None:
        self.model.cycle_sort()
        self.reload()

    def action_reverse_sort(self) -> None:
        self.model.set_sort(self.model.sort_key, not self.model.sort_reverse)
        self.reload()

    def on_click(self, event: Click) -> None:
        if event.y == 0:
            return
        index = int(self.scroll_y) + event.y - 1
        if index < len(self.model.order):
            self._set_cursor(index)
            if event.chain == 2:
                self.action_select()
