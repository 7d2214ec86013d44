"""The dashboard's view model in plain Python: hosts, sites, attention; fed by values and events.

No Textual here. Rows are filled from plain values (``HostRecord`` plus a ``HostStatus``), so tests
and the benchmark feed it from a list and the app feeds it from the store. Engine events are only
*recorded* by :meth:`FleetModel.apply` (the newest event per host wins); :meth:`FleetModel.flush`,
called every 100 ms by the screen, folds them in and says what changed. A flood of 1,000 host
events per second thus costs one repaint of the visible rows per tick (FIELD-NOTES.md §5).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from mssp.events import (
    AgentPresenceChanged,
    Event,
    HostStateChanged,
    RunFinished,
    RunStarted,
)
from mssp.inventory import HostRecord
from tui.filtering import HostFilter
from tui.rows import (
    BACKUP_VERIFIED,
    DOWN,
    PROBLEM_STATES,
    REACHED_STATES,
    SORT_KEYS,
    UNKNOWN,
    UP,
    Attention,
    FlushResult,
    HostRow,
    HostStatus,
    LogLine,
    SiteRow,
)
from tui.text import one_line

if TYPE_CHECKING:
    from tui.services import RunInfo


_STATUS_RANK = {DOWN: 0, UNKNOWN: 1, UP: 2}


class FleetModel:
    """Hosts and sites, the visible order (filter, scope, sort), selection, pending events."""

    LOG_PER_FLUSH = 3
    """Host problems logged one by one per flush; the rest are summed up in one line."""

    def __init__(self) -> None:
        self.rows: dict[str, HostRow] = {}
        self.records: dict[str, HostRecord] = {}
        self.sites: dict[tuple[str, str], SiteRow] = {}
        self.order: list[str] = []
        self._index: dict[str, int] = {}
        self.selected: set[str] = set()
        self.filter_text = ""
        self._filter = HostFilter()
        self.scope: tuple[str, str | None] | None = None
        """(client, site or None) chosen in the client tree; None shows every client."""
        self.sort_key = "name"
        self.sort_reverse = False
        self.failed_runs: set[int] = set()
        self.active_runs: dict[int, str] = {}
        self.known_runs: dict[int, str] = {}
        """Run id -> state, as last seen in the database or in events."""
        self._runs_seeded = False
        self._pending_hosts: dict[str, HostStateChanged] = {}
        self._pending_other: list[Event] = []
        self._attention = Attention()
        self.touched: set[str] = set()
        """Hosts that took part in runs since the store was last asked about them."""

    # -- loading -------------------------------------------------------------------------------

    def load(
        self,
        records: Iterable[HostRecord],
        status: Mapping[str, HostStatus] | None = None,
        sites: Iterable[SiteRow] = (),
        *,
        failed_runs: Iterable[int] = (),
    ) -> None:
        """Replace everything with these values (the store's view at one moment)."""
        status = status or {}
        records = list(records)
        self.records = {r.full_name: r for r in records}
        self.rows = {r.full_name: HostRow.build(r, status.get(r.full_name)) for r in records}
        self.sites = {(s.client, s.site): s for s in sites}
        for row in self.rows.values():
            key = (row.client, row.site)
            if key not in self.sites:
                self.sites[key] = SiteRow(row.client, row.site, reach=row.via)
        for site in self.sites.values():
            site.host_count = 0
        for row in self.rows.values():
            self.sites[(row.client, row.site)].host_count += 1
        self.failed_runs = set(failed_runs)
        self.selected &= self.rows.keys()
        self._recompute()
        self._attention = self.compute_attention()

    def merge_status(self, status: Mapping[str, HostStatus]) -> None:
        """Fold in what the store knows beyond the inventory (read after the first paint).
        A host's run state is taken only when newer than what events already showed."""
        for name, value in status.items():
            row = self.rows.get(name)
            if row is None:
                continue
            row.pending_updates = value.pending_updates
            row.backup_state = value.backup_state
            if value.os and one_line(value.os) != row.os:
                row.os = one_line(value.os)
                row.search = f"{row.search} {row.os.lower()}"
            newer = value.last_run_id is not None and (
                row.last_run_id is None or value.last_run_id > row.last_run_id
            )
            if newer or (row.last_run_id is None and value.status != UNKNOWN):
                row.status, row.last_seen = value.status, value.last_seen
                row.last_run, row.last_run_id = value.last_run, value.last_run_id
            row.version += 1
        self._recompute()
        self._attention = self.compute_attention()

    # -- view state ----------------------------------------------------------------------------

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self._filter = HostFilter.parse(text)
        self._recompute()

    def set_scope(self, client: str | None, site: str | None = None) -> None:
        self.scope = None if client is None else (client, site)
        self._recompute()

    def set_sort(self, key: str, reverse: bool = False) -> None:
        if key not in SORT_KEYS:
            raise ValueError(f"unknown sort key {key!r}")
        self.sort_key, self.sort_reverse = key, reverse
        self._recompute()

    def cycle_sort(self) -> None:
        self.set_sort(SORT_KEYS[(SORT_KEYS.index(self.sort_key) + 1) % len(SORT_KEYS)])

    def index_of(self, full_name: str) -> int | None:
        return self._index.get(full_name)

    def toggle_selected(self, full_name: str) -> None:
        if full_name in self.selected:
            self.selected.discard(full_name)
        elif full_name in self.rows:
            self.selected.add(full_name)

    def visible_selection(self) -> list[str]:
        """The multi-selection in visible order (hidden-by-filter hosts stay selected)."""
        return sorted(self.selected, key=lambda n: self._index.get(n, len(self._index)))

    def _recompute(self) -> None:
        rows = self.rows.values()
        if self.scope is not None:
            client, site = self.scope
            rows = [r for r in rows if r.client == client and (site is None or r.site == site)]
        if self._filter.terms:
            rows = [r for r in rows if self._filter.matches(r)]
        rows = sorted(rows, key=self._sort_key_func(), reverse=self.sort_reverse)
        self.order = [r.full_name for r in rows]
        self._index = {name: i for i, name in enumerate(self.order)}

    def _sort_key_func(self):
        key = self.sort_key
        if key == "name":
            return lambda r: r.full_name
        if key == "client":
            return lambda r: (r.client, r.site, r.name)
        if key == "os":
            return lambda r: (r.os, r.full_name)
        if key == "status":
            return lambda r: (_STATUS_RANK.get(r.status, 1), r.full_name)
        if key == "last_seen":
            return lambda r: (r.last_seen or 0.0, r.full_name)
        if key == "updates":
            return lambda r: (-(r.pending_updates or 0), r.full_name)
        if key == "backup":
            return lambda r: (r.backup_state == BACKUP_VERIFIED, r.backup_state, r.full_name)
        return lambda r: (r.last_run not in PROBLEM_STATES, r.last_run, r.full_name)

    # -- live events ---------------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Record an event; cheap, so a flood never blocks the event loop. Folded in by flush()."""
        if isinstance(event, HostStateChanged):
            if event.host in self.rows:
                self._pending_hosts[event.host] = event
        elif isinstance(event, RunStarted | RunFinished | AgentPresenceChanged):
            self._pending_other.append(event)

    def flush(self, now: float | None = None) -> FlushResult:
        """Fold recorded events into the rows; say what changed."""
        if not self._pending_hosts and not self._pending_other:
            return FlushResult()
        now = time.time() if now is None else now
        pending, self._pending_hosts = self._pending_hosts, {}
        others, self._pending_other = self._pending_other, []
        log: deque[LogLine] = deque()
        problems = 0
        finished: list[int] = []
        self.touched.update(pending)
        for name, event in pending.items():
            row = self.rows[name]
            row.last_run, row.last_run_id = event.state, event.run_id
            row.note = one_line(event.message) if event.message else ""
            if event.state in REACHED_STATES:
                row.status, row.last_seen = UP, event.at
            elif event.state == "unreachable":
                row.status = DOWN
            row.version += 1
            if event.state in PROBLEM_STATES:
                problems += 1
                if problems <= self.LOG_PER_FLUSH:
                    detail = f": {one_line(event.message)}" if event.message else ""
                    log.append(
                        LogLine(event.at, "error", f"{row.display_name} {event.state}{detail}")
                    )
        if problems > self.LOG_PER_FLUSH:
            more = problems - self.LOG_PER_FLUSH
            log.append(LogLine(now, "error", f"… and {more} more hosts with problems"))
        sites_changed = False
        for event in others:
            if isinstance(event, RunStarted):
                self.active_runs[event.run_id] = event.task
                self.known_runs[event.run_id] = "running"
                log.append(
                    LogLine(
                        event.at,
                        "info",
                        f"run {event.run_id} started: {one_line(event.task)} on "
                        f"{one_line(event.target)} ({event.host_count} hosts)",
                    )
                )
            elif isinstance(event, RunFinished):
                finished.append(event.run_id)
                self.active_runs.pop(event.run_id, None)
                self.known_runs[event.run_id] = event.state
                bad = sum(event.counts.get(s, 0) for s in PROBLEM_STATES)
                if bad or event.state not in ("finished", "ok"):
                    self.failed_runs.add(event.run_id)
                counts = ", ".join(f"{k} {v}" for k, v in sorted(event.counts.items()) if v)
                level = "error" if bad else "info"
                log.append(LogLine(event.at, level, f"run {event.run_id} {event.state}: {counts}"))
            elif isinstance(event, AgentPresenceChanged):
                sites_changed = True
                site = self.sites.setdefault(
                    (event.client, event.site), SiteRow(event.client, event.site, reach="relay")
                )
                was = site.agent_online
                site.agent_online = event.online
                site.agent_last_seen = event.at
                if was != event.online:  # the relay repeats presence (RTT, last seen) every ~10 s
                    state = "online" if event.online else "OFFLINE"
                    log.append(
                        LogLine(
                            event.at,
                            "info" if event.online else "warning",
                            f"agent {one_line(event.client)}/{one_line(event.site)} {state}",
                        )
                    )
        reordered = False
        if pending and (self.sort_key != "name" or self._filter.uses_live_fields):
            before = self.order
            self._recompute()
            reordered = before != self.order
        attention = self.compute_attention()
        attention_changed = attention != self._attention
        self._attention = attention
        return FlushResult(
            changed_hosts=frozenset(pending),
            reordered=reordered,
            sites_changed=sites_changed,
            log=tuple(sorted(log, key=lambda line: line.at)),
            attention_changed=attention_changed,
            runs_finished=tuple(finished),
        )

    def note_runs(self, runs: Iterable[RunInfo]) -> list[LogLine]:
        """Runs seen in the database (maybe started by another process): learn the new ones."""
        lines = []
        now = time.time()
        for run in runs:
            known = self.known_runs.get(run.run_id)
            self.known_runs[run.run_id] = run.state
            if run.failed:
                self.failed_runs.add(run.run_id)
            if known == run.state or run.run_id in self.active_runs:
                continue
            if known is None and not self._runs_seeded:
                continue  # the first look only seeds what we know
            counts = ", ".join(f"{k} {v}" for k, v in sorted(run.counts.items()) if v)
            lines.append(
                LogLine(
                    now,
                    "error" if run.failed else "info",
                    f"run {run.run_id} ({one_line(run.task)} on {one_line(run.target)}) "
                    f"{run.state}{': ' + counts if counts else ''}",
                )
            )
        self._runs_seeded = True
        attention = self.compute_attention()
        self._attention = attention
        return lines

    # -- summaries -----------------------------------------------------------------------------

    @property
    def attention(self) -> Attention:
        return self._attention

    def compute_attention(self) -> Attention:
        down = unverified = 0
        for row in self.rows.values():
            if row.status == DOWN:
                down += 1
            if row.backup_state and row.backup_state != BACKUP_VERIFIED:
                unverified += 1
        offline = sum(1 for s in self.sites.values() if s.agent_online is False)
        return Attention(down, unverified, len(self.failed_runs), offline)

    def clients(self) -> dict[str, list[SiteRow]]:
        """Sites grouped by client, both sorted by slug."""
        grouped: dict[str, list[SiteRow]] = {}
        for key in sorted(self.sites):
            grouped.setdefault(key[0], []).append(self.sites[key])
        return grouped


__all__ = [
    "BACKUP_VERIFIED",
    "DOWN",
    "PROBLEM_STATES",
    "REACHED_STATES",
    "SORT_KEYS",
    "UNKNOWN",
    "UP",
    "Attention",
    "FleetModel",
    "FlushResult",
    "HostRow",
    "HostStatus",
    "LogLine",
    "SiteRow",
]
