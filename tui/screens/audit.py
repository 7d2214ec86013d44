"""The audit log: the newest entries, filtered by client and action, and a check of the hash chain.

Entries are shown read-only; ``v`` recomputes every entry's hash (mssp.audit.verify) and says
whether the chain is intact, or at which entry and how it breaks. Targets and details can quote
what hosts sent, so they are neutralised.
"""

from __future__ import annotations

import json

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Input, Static

from mssp.audit import Entry, VerifyResult
from tui.keys import bindings_for
from tui.screens.base import MsspScreen
from tui.text import one_line

PAGE = 500
RESULT_STYLES = {"ok": "green", "intent": "cyan", "failed": "bold red", "denied": "bold red"}


def verify_text(result: VerifyResult) -> Text:
    if result.ok:
        return Text(
            f"✓ chain intact: {result.entries} entries, head {result.head_hash[:16]}…",
            style="bold green",
        )
    return Text(
        f"✗ chain BROKEN at entry {result.first_bad_seq}: {one_line(result.problem)} "
        f"({result.entries} entries read). Compare with an off-machine checkpoint: "
        "mssp audit verify --checkpoints FILE",
        style="bold red",
    )


def detail_text(entry: Entry) -> Text:
    text = Text()
    text.append(f"#{entry.seq}  {entry.at}  ", style="bold")
    text.append(f"{one_line(entry.actor)}  {one_line(entry.action)}  ")
    text.append(entry.result, style=RESULT_STYLES.get(entry.result, "yellow"))
    if entry.intent_seq:
        text.append(f"  (outcome of #{entry.intent_seq})")
    try:
        detail = json.loads(entry.detail)
    except ValueError:
        detail = entry.detail
    shown = json.dumps(detail, sort_keys=True, ensure_ascii=False) if detail else "{}"
    text.append(f"\ntarget {one_line(entry.target) or '-'}   detail {one_line(shown)[:400]}")
    text.append(f"\nhash {entry.hash}  prev {entry.prev_hash[:16]}…", style="dim")
    return text


class AuditScreen(MsspScreen):
    """Audit entries, newest first. /: filter (client:SLUG action:PREFIX); v: verify the chain."""

    BINDINGS = bindings_for("audit")

    def __init__(self, *, client: str = "", action: str = "") -> None:
        super().__init__(name="audit")
        self.client = client
        self.action = action
        self.entries: list[Entry] = []
        self.verified: VerifyResult | None = None
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Static("Audit log", classes="section-title")
        with Horizontal(id="audit-filters"):
            yield Input(self.client, placeholder="client (slug)", id="audit-client")
            yield Input(
                self.action, placeholder="action prefix (run, cred, session...)", id="audit-action"
            )
        yield Static(id="audit-verify", classes="hint")
        yield DataTable(id="audit-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="audit-detail")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("seq", "at", "actor", "action", "client", "target", "result")
        self.query_one("#audit-verify", Static).update(
            Text("v verifies the hash chain of every entry", style="dim")
        )
        table.focus()
        self.load()

    @work(exclusive=True, group="audit", exit_on_error=False)
    async def load(self) -> None:
        source = self.app.services.source  # type: ignore[attr-defined]
        self.entries = await source.audit_entries(
            client=self.client or None, action=self.action or None, limit=PAGE
        )
        table = self.query_one(DataTable)
        table.clear()
        for entry in reversed(self.entries):  # newest first: what just happened is on top
            table.add_row(
                str(entry.seq),
                entry.at[:19].replace("T", " "),
                Text(one_line(entry.actor)[:24]),
                Text(one_line(entry.action)),
                Text(one_line(entry.client) or "-"),
                Text(one_line(entry.target)[:48]),
                Text(entry.result, style=RESULT_STYLES.get(entry.result, "yellow")),
                key=str(entry.seq),
            )
        if not self.entries:
            wanted = (
                self.client and f"client {self.client}",
                self.action and f"action {self.action}*",
            )
            filters = " and ".join(f for f in wanted if f)
            self.query_one("#audit-detail", Static).update(
                Text(f"No entries{' for ' + filters if filters else ''}.", style="dim")
            )
        self.loaded = True

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        seq = event.row_key.value
        entry = next((e for e in self.entries if str(e.seq) == seq), None)
        if entry is not None:
            self.query_one("#audit-detail", Static).update(detail_text(entry))

    @on(Input.Submitted)
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.set_filters(
            self.query_one("#audit-client", Input).value,
            self.query_one("#audit-action", Input).value,
        )
        self.query_one(DataTable).focus()

    def set_filters(self, client: str, action: str) -> None:
        self.client, self.action = client.strip(), action.strip()
        self.query_one("#audit-client", Input).value = self.client
        self.query_one("#audit-action", Input).value = self.action
        self.load()

    def action_filter(self) -> None:
        self.query_one("#audit-client", Input).focus()

    def action_verify(self) -> None:
        self.query_one("#audit-verify", Static).update(Text("verifying the chain…"))
        self.verify()

    @work(exclusive=True, group="verify", exit_on_error=False)
    async def verify(self) -> None:
        source = self.app.services.source  # type: ignore[attr-defined]
        self.verified = result = await source.verify_audit()
        self.query_one("#audit-verify", Static).update(verify_text(result))
        if not result.ok:
            self.notify(verify_text(result).plain, title="Audit chain", severity="error")

    def action_back(self) -> None:
        if isinstance(self.focused, Input):
            self.query_one(DataTable).focus()
            return
        self.app.pop_screen()

    def action_refresh(self) -> None:
        self.load()
