"""Fleets and screen helpers for the dashboard tests."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

from textual.app import App

from mssp.inventory import HostRecord
from tui.model import HostStatus
from tui.services import FleetSnapshot

SIZE = (160, 48)
SNAPSHOTS = Path(__file__).parent / "snapshots"


def fleet(count: int, *, clients: int = 5, seen: float | None = 1_700_000_000.0) -> FleetSnapshot:
    """``count`` hosts spread over ``clients`` clients of two sites each; every 10th one down."""
    hosts, status = [], {}
    for i in range(count):
        record = HostRecord(
            client=f"client{i % clients}",
            site=f"site{i % 2}",
            name=f"host{i:05d}",
            address=f"10.0.{i // 256 % 256}.{i % 256}",
            os_family="debian" if i % 3 else "windows",
            tags=frozenset({"web"} if i % 4 == 0 else {"db"}),
        )
        hosts.append(record)
        status[record.full_name] = HostStatus(
            status="down" if i % 10 == 0 else "up", last_seen=seen
        )
    return FleetSnapshot(hosts=hosts, status=status)


async def wait_for(predicate, timeout: float = 10.0) -> None:
    """Await a condition the app reaches by itself (a worker finishing, a screen opening)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def screen_text(app: App) -> str:
    """The screen as plain text, the way a terminal would show it."""
    update = app.screen._compositor.render_full_update()
    return "\n".join("".join(strip.text for strip in line) for line in update.strips)


def assert_matches_snapshot(text: str, name: str) -> None:
    """Compare with tests/tui/snapshots/NAME.txt; MSSP_UPDATE_SNAPSHOTS=1 rewrites it."""
    text = re.sub(r"\d\d:\d\d:\d\d", "HH:MM:SS", text)
    text = "\n".join(line.rstrip() for line in text.splitlines()) + "\n"
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("MSSP_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no snapshot {path}; run with MSSP_UPDATE_SNAPSHOTS=1 and review it"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"screen differs from {path}:\n{text}"
