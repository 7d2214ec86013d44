"""Backups: the latest restore-verified check of every host, and one host's verification history.

A state is only ever what a verification recorded (VERIFIED, STALE, CORRUPT, UNVERIFIABLE,
NOT_RUN); its reason and a summary of the evidence (snapshot, check, restored files) sit beside it
so the consultant sees why without opening anything. Everything here came from hosts or their
repositories, so it is neutralised and shown as plain text.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Static

from mssp.store.views import BackupCheckView
from tui.keys import bindings_for
from tui.screens.base import MsspScreen
from tui.text import one_line
from tui.widgets.host_table import format_age

VERIFY_TASK = "backup.verify"
STATE_STYLES = {
    "VERIFIED": "bold green",
    "STALE": "bold yellow",
    "CORRUPT": "bold red",
    "UNVERIFIABLE": "bold magenta",
    "NOT_RUN": "bold red",
}
REASON_WIDTH = 66
"""The reason matters more than the evidence: it keeps its room; the rest is in the history."""
STATE_ORDER = ("CORRUPT", "NOT_RUN", "UNVERIFIABLE", "STALE", "VERIFIED")


def _when(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


def _size(count: Any) -> str:
    value = float(count) if isinstance(count, int | float) else 0.0
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


def evidence_parts(
    evidence: Mapping[str, Any], now: float | None = None, *, short: bool = False
) -> list[str]:
    """The evidence of one verification in phrases: repository access, newest snapshot, the
    check and the data it read, the restored files (``short`` for a table cell). Unknown shapes
    give fewer phrases, never an error."""
    now = time.time() if now is None else now
    parts: list[str] = []
    access = evidence.get("access", "ok")
    if access and access != "ok":
        message = one_line(str(evidence.get("access_message", "")))[:60]
        parts.append(f"repository {access}" + (f" ({message})" if message and not short else ""))
    latest = evidence.get("latest")
    if isinstance(latest, Mapping):
        when = _when(latest.get("time"))
        age = f" {format_age(now - when.timestamp())} old" if when else ""
        count = evidence.get("snapshot_count")
        of = f" (of {count})" if isinstance(count, int) and not short else ""
        word = "snap" if short else "snapshot"
        parts.append(f"{word} {one_line(str(latest.get('short_id', '?')))}{age}{of}")
    elif access == "ok" and evidence:
        parts.append("no snapshot")
    check = evidence.get("check")
    if isinstance(check, Mapping):
        subset = one_line(str(check.get("subset", "?")))
        if not check.get("structural_ok"):
            parts.append("check FAILED")
        elif short:
            parts.append(f"read {subset} {'ok' if check.get('read_ok') else 'FAILED'}")
        else:
            read = "read ok" if check.get("read_ok") else "read FAILED"
            parts.append(
                f"check ok, {read} {subset} "
                f"({check.get('packs_read', 0)} packs, {_size(check.get('bytes_read'))})"
            )
    restored = evidence.get("restored")
    if isinstance(restored, Sequence) and restored:
        good = sum(1 for f in restored if isinstance(f, Mapping) and _matches(f))
        if short:
            parts.append(f"restore {good}/{len(restored)} {'ok' if good == len(restored) else '✗'}")
        else:
            parts.append(f"restored {good}/{len(restored)} matched")
    return parts


def _matches(item: Mapping[str, Any]) -> bool:
    return bool(item.get("sha256")) and item.get("sha256") == item.get("expected_sha256")


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, "bold"))


class BackupsScreen(MsspScreen):
    """Every host's newest verification. enter: that host's history; v: verify it now."""

    BINDINGS = bindings_for("backups")

    def __init__(self) -> None:
        super().__init__(name="backups")
        self.checks: list[BackupCheckView] = []
        self.problems_only = False
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Static("Backups: latest verification per host", classes="section-title")
        yield Static(id="backup-summary", classes="hint")
        yield DataTable(id="backup-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("host")
        table.add_column("state")
        table.add_column("checked")
        table.add_column("why", width=REASON_WIDTH)
        table.add_column("evidence")
        table.focus()
        self.load()

    @work(exclusive=True, group="backups", exit_on_error=False)
    async def load(self) -> None:
        self.checks = await self.app.services.source.latest_backups()  # type: ignore[attr-defined]
        self.show()
        self.loaded = True

    def shown_checks(self) -> list[BackupCheckView]:
        checks = self.checks
        if self.problems_only:
            checks = [c for c in checks if c.state != "VERIFIED"]
        rank = {s: i for i, s in enumerate(STATE_ORDER)}
        return sorted(checks, key=lambda c: (rank.get(c.state, -1), c.host))

    def show(self) -> None:
        now = time.time()
        table = self.query_one(DataTable)
        keep = self.cursor_host
        table.clear()
        shown = self.shown_checks()
        for check in shown:
            table.add_row(
                Text(one_line(check.host)),
                state_text(check.state),
                format_age(now - check.checked_at.timestamp()) + " ago",
                Text(one_line(check.reason), overflow="ellipsis", no_wrap=True),
                Text(", ".join(evidence_parts(check.evidence, now, short=True))),
                key=check.host,
            )
        hosts = [c.host for c in shown]
        if keep in hosts:  # the cursor stays on its host across a refresh or the toggle
            table.move_cursor(row=hosts.index(keep))
        counts = Counter(c.state for c in self.checks)
        summary = Text()
        if not self.checks:
            summary.append(
                "No verification recorded yet: run backup.verify (v on a host, or "
                "`mssp schedule add nightly-verify --task backup.verify ...`).",
                style="dim",
            )
        for state in STATE_ORDER:
            if counts.get(state):
                summary.append(f"{counts[state]} ", style="bold")
                summary.append(state, style=STATE_STYLES[state])
                summary.append("   ")
        if self.problems_only:
            summary.append("(problems only: p shows all)", style="italic")
        self.query_one("#backup-summary", Static).update(summary)

    @property
    def cursor_host(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return str(key.value) if key.value is not None else None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.app.push_screen(BackupHistoryScreen(str(event.row_key.value)))

    def action_toggle_problems(self) -> None:
        self.problems_only = not self.problems_only
        self.show()

    def action_verify(self) -> None:
        host = self.cursor_host
        if host:
            self.app.open_launcher([host], task=VERIFY_TASK)  # type: ignore[attr-defined]

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_refresh(self) -> None:
        self.load()


class BackupHistoryScreen(MsspScreen):
    """One host's verifications, newest first; the highlighted one's reason and evidence below."""

    BINDINGS = bindings_for("backup_history")

    def __init__(self, host: str) -> None:
        super().__init__(name="backup-history")
        self.host = host
        self.checks: list[BackupCheckView] = []
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Static(Text(f"Backup history of {one_line(self.host)}"), classes="section-title")
        yield DataTable(id="history-table", cursor_type="row")
        yield VerticalScroll(Static(id="history-detail"), id="history-detail-pane")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("checked", "state", "run", "evidence")
        table.focus()
        self.load()

    @work(exclusive=True, group="history", exit_on_error=False)
    async def load(self) -> None:
        source = self.app.services.source  # type: ignore[attr-defined]
        self.checks = await source.backup_history(self.host)
        table = self.query_one(DataTable)
        table.clear()
        now = time.time()
        for i, check in enumerate(self.checks):
            table.add_row(
                f"{check.checked_at.astimezone():%Y-%m-%d %H:%M}",
                state_text(check.state),
                str(check.run_id or "-"),
                Text(", ".join(evidence_parts(check.evidence, now, short=True))),
                key=str(i),
            )
        if not self.checks:
            self.query_one("#history-detail", Static).update(
                Text("No verification recorded for this host (v verifies it now).", style="dim")
            )
        else:
            self.show_detail(0)
        self.loaded = True

    def show_detail(self, index: int) -> None:
        check = self.checks[index]
        text = Text()
        text.append_text(state_text(check.state))
        text.append(f"  checked {check.checked_at.astimezone():%Y-%m-%d %H:%M:%S %Z}")
        if check.run_id:
            text.append(f"  (run {check.run_id})")
        text.append("\n\nWhy: ", style="bold")
        text.append(one_line(check.reason) or "-")
        text.append("\n\nEvidence:\n", style="bold")
        parts = evidence_parts(check.evidence)
        for part in parts or ["none recorded (the host or repository could not be reached)"]:
            text.append(f"  • {part}\n")
        repository = check.evidence.get("repository")
        if repository:
            text.append(f"  • repository {one_line(str(repository))}\n")
        restored = check.evidence.get("restored")
        for item in restored if isinstance(restored, Sequence) else ():
            if isinstance(item, Mapping):
                ok = _matches(item)
                mark = "✓" if ok else "✗"
                problem = one_line(str(item.get("problem") or item.get("error") or ""))
                text.append(
                    f"    {mark} {item.get('role', 'file')} {one_line(str(item.get('path', '?')))}"
                    + (f": {problem}" if problem and not ok else "")
                    + "\n"
                )
        self.query_one("#history-detail", Static).update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None and self.checks:
            self.show_detail(int(event.row_key.value))

    def action_verify(self) -> None:
        self.app.open_launcher([self.host], task=VERIFY_TASK)  # type: ignore[attr-defined]

    def action_back(self) -> None:
        self.app.pop_screen()
