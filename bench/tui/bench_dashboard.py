"""Benchmark the dashboard with 10,000 hosts: first paint, filter, key → repaint under load, memory.

Usage:
    .venv/bin/python bench/tui/bench_dashboard.py            # headless, 160x48
    .venv/bin/python bench/tui/bench_dashboard.py --terminal # in a real terminal (run it in tmux)
    options: --hosts N --rate EVENTS_PER_S --keys N --json

The real MsspApp runs on an in-memory fleet (MemorySource); events are published on the real
EventBus at the given rate by a task in the same loop, as the engine would. Key presses go through
the driver exactly like a terminal's (``driver.send_message(Key)``) and are timed from the send to
the first screen update written after the table painted the new cursor row; ``pilot.press`` waits
for idle and cannot time anything (FIELD-NOTES.md §5).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from textual import events

from mssp.events import HostStateChanged
from mssp.inventory import HostRecord
from tui.app import MsspApp
from tui.model import HostStatus
from tui.services import FleetSnapshot, MemorySource, Services
from tui.widgets.host_table import HostTable

STATES = ("running", "ok", "changed", "failed", "unreachable", "ok", "ok", "changed")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_fleet(count: int) -> FleetSnapshot:
    rng = random.Random(7)
    hosts, status = [], {}
    for i in range(count):
        client = f"client{i % 120:03d}"
        record = HostRecord(
            client=client,
            site=f"site{i % 4}",
            name=f"host{i:05d}",
            address=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
            os_family=rng.choice(("debian", "ubuntu", "windows", "rhel")),
            via=rng.choice(("direct", "relay")),
            tags=frozenset({rng.choice(("web", "db", "ws", "dc"))}),
        )
        hosts.append(record)
        status[record.full_name] = HostStatus(
            status=rng.choice(("up", "up", "up", "down", "unknown")),
            last_seen=time.time() - rng.randint(0, 86400),
            pending_updates=rng.randint(0, 40),
            backup_state=rng.choice(("VERIFIED", "VERIFIED", "STALE", "")),
            last_run=rng.choice(("ok", "changed", "failed", "")),
        )
    return FleetSnapshot(hosts=hosts, status=status)


class Probe:
    """Timestamps: when the table painted the awaited cursor row, then the next screen update."""

    def __init__(self, app: MsspApp, table: HostTable) -> None:
        self.app, self.table = app, table
        self.want_cursor: int | None = None
        self.painted = False
        self.any_line = False
        self.painted_at = 0.0
        self.paint_ms: list[float] = []
        self.done: asyncio.Future | None = None
        original_line = table.render_line
        original_display = app._display

        def render_line(y: int):
            if self.any_line:
                self.painted = True
            if self.want_cursor is not None and table.cursor == self.want_cursor:
                index = int(table.scroll_y) + y - 1
                if index == self.want_cursor and not self.painted:
                    self.painted = True
                    self.painted_at = time.perf_counter()
            return original_line(y)

        def display(screen, renderable):
            original_display(screen, renderable)
            if self.painted and self.done is not None and not self.done.done():
                self.done.set_result(time.perf_counter())

        table.render_line = render_line  # type: ignore[method-assign]
        app._display = display  # type: ignore[method-assign]

    async def press(self, key: str, expect_cursor: int) -> float:
        self.want_cursor, self.painted = expect_cursor, False
        self.done = asyncio.get_running_loop().create_future()
        start = time.perf_counter()
        self.app._driver.send_message(events.Key(key, None))  # type: ignore[union-attr]
        end = await asyncio.wait_for(self.done, 5)
        self.want_cursor = None
        self.paint_ms.append((self.painted_at - start) * 1000)
        return (end - start) * 1000


async def publisher(app: MsspApp, names: list[str], rate: int, stop: asyncio.Event) -> int:
    """Publish ``rate`` HostStateChanged events per second, in 10 ms batches."""
    rng = random.Random(1)
    sent = 0
    start = time.perf_counter()
    while not stop.is_set():
        due = int((time.perf_counter() - start) * rate)
        for _ in range(due - sent):
            app.services.bus.publish(
                HostStateChanged(run_id=1, host=rng.choice(names), state=rng.choice(STATES))
            )
        sent = max(sent, due)
        await asyncio.sleep(0.01)
    return sent


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def measure(app: MsspApp, args: argparse.Namespace, t0: float, rss0: float) -> dict:
    # Polling on purpose: the benchmark observes the app from outside, as a user would.
    while not getattr(app.screen, "loaded", False):  # noqa: ASYNC110
        await asyncio.sleep(0.002)
    table = app.screen.query_one(HostTable)
    while table.render_count == 0:  # noqa: ASYNC110
        await asyncio.sleep(0.002)
    first_paint = time.perf_counter() - t0
    rss_loaded = rss_mb()
    probe = Probe(app, table)
    dashboard = app.dashboard

    # Filter 10k -> 2.5k -> 10k with the filter box open (as when typing), timed to the screen
    # update that follows the table's repaint.
    dashboard.action_filter()
    await asyncio.sleep(0.3)
    filter_ms = []
    for text in ("site1 ", ""):
        probe.any_line, probe.painted = True, False
        probe.done = asyncio.get_running_loop().create_future()
        start = time.perf_counter()
        dashboard.set_filter(text)
        filter_ms.append((await asyncio.wait_for(probe.done, 5) - start) * 1000)
        probe.any_line = False
        shown = len(app.model.order)
        filter_ms[-1] = round(filter_ms[-1], 1)
        if text:
            filtered_count = shown
    dashboard.action_back()  # close the filter box
    table.focus()
    await asyncio.sleep(0.3)

    # Idle key latency, then under the event flood.
    async def keys(n: int) -> list[float]:
        out = []
        for i in range(n):
            down = i % 40 < 20  # walk down and back so the cursor scrolls the view too
            target = table.cursor + (1 if down else -1)
            out.append(await probe.press("down" if down else "up", target))
            await asyncio.sleep(0.02)
        return out

    idle = await keys(50)
    idle_paint, probe.paint_ms = probe.paint_ms, []
    stop = asyncio.Event()
    pub = asyncio.create_task(publisher(app, list(app.model.rows), args.rate, stop))
    await asyncio.sleep(1.0)  # let the flood reach a steady state
    cpu0, wall0, seen0 = time.process_time(), time.perf_counter(), app.events_seen
    loaded = await keys(args.keys)
    cpu1, wall1, seen1 = time.process_time(), time.perf_counter(), app.events_seen
    stop.set()
    sent = await pub
    return {
        "hosts": len(app.model.rows),
        "first_paint_s": round(first_paint, 3),
        "filter_ms_10k_to_subset_to_10k": filter_ms,
        "filter_subset_rows": filtered_count,
        "key_latency_idle_ms": {
            "median": round(statistics.median(idle), 2),
            "p95": round(pct(idle, 0.95), 2),
        },
        "key_to_table_paint_ms": {
            "idle_median": round(statistics.median(idle_paint), 2),
            "load_median": round(statistics.median(probe.paint_ms), 2),
            "load_p95": round(pct(probe.paint_ms, 0.95), 2),
        },
        "key_latency_under_load_ms": {
            "median": round(statistics.median(loaded), 2),
            "p95": round(pct(loaded, 0.95), 2),
            "max": round(max(loaded), 2),
            "presses": len(loaded),
        },
        "events_per_s_offered": args.rate,
        "events_per_s_consumed": round((seen1 - seen0) / (wall1 - wall0)),
        "events_sent": sent,
        "cpu_percent_of_a_core_under_load": round(100 * (cpu1 - cpu0) / (wall1 - wall0), 1),
        "rss_mb": {
            "before_app": round(rss0, 1),
            "after_first_paint": round(rss_loaded, 1),
            "after_flood": round(rss_mb(), 1),
        },
        "lines_rendered": table.render_count,
    }


async def run_on_store(fleet: FleetSnapshot, args, result: dict, rss0: float) -> None:
    """Put the fleet in a fresh SQLite database, then time the app loading it through the store."""
    import tempfile

    from mssp import db
    from mssp.config import load_settings
    from mssp.models.inventory import Client, Host, Site
    from tui.services import StoreSource

    with tempfile.TemporaryDirectory() as home:
        settings = load_settings({"MSSP_HOME": home})
        async with db.database(settings):
            clients = {h.client for h in fleet.hosts}
            await Client.bulk_create([Client(slug=c, name=c) for c in sorted(clients)])
            client_ids = dict(await Client.all().values_list("slug", "id"))
            sites = sorted({(h.client, h.site) for h in fleet.hosts})
            await Site.bulk_create(
                [Site(client_id=client_ids[c], slug=s, name=s) for c, s in sites]
            )
            site_ids = {
                (c, s): i for i, c, s in await Site.all().values_list("id", "client__slug", "slug")
            }
            await Host.bulk_create(
                [
                    Host(
                        site_id=site_ids[(h.client, h.site)],
                        name=h.name,
                        address=h.address,
                        os_family=h.os_family,
                        tags=",".join(sorted(h.tags)),
                    )
                    for h in fleet.hosts
                ],
                batch_size=1000,
            )
            t0 = time.perf_counter()
            snapshot = await StoreSource().snapshot()
            result["store_snapshot_s"] = round(time.perf_counter() - t0, 3)
            t0 = time.perf_counter()
            app = MsspApp(Services(StoreSource()))
            async with app.run_test(size=(160, 48)):
                result.update(await measure(app, args, t0, rss0))
            result["hosts_from_store"] = len(snapshot.hosts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=1_000)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--terminal", action="store_true", help="render to this terminal")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--store",
        action="store_true",
        help="load the fleet from a real SQLite database through mssp.store (headless)",
    )
    args = parser.parse_args()
    fleet = make_fleet(args.hosts)
    rss0 = rss_mb()
    result: dict = {}

    async def headless() -> None:
        if args.store:
            await run_on_store(fleet, args, result, rss0)
            return
        t0 = time.perf_counter()
        app = MsspApp(Services(MemorySource(fleet)))
        async with app.run_test(size=(160, 48)):
            result.update(await measure(app, args, t0, rss0))

    if args.terminal:
        t0 = time.perf_counter()
        app = MsspApp(Services(MemorySource(fleet)))

        async def bench_worker() -> None:
            result.update(await measure(app, args, t0, rss0))
            app.exit()

        app.call_later(lambda: app.run_worker(bench_worker(), group="bench"))
        app.run()
        result["mode"] = "terminal"
    else:
        asyncio.run(headless())
        result["mode"] = "headless 160x48" + (
            ", fleet from SQLite via mssp.store" if args.store else ""
        )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:36} {value}")


if __name__ == "__main__":
    main()
