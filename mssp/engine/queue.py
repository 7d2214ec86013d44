"""The offline queue phase of a run: hosts parked because they (or their site's agent) were
unreachable wait durably (HostRun.queued_until), are retried when the site's agent comes back
(AgentPresenceChanged) or on periodic probes, and expire with an event after their TTL."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mssp import events
from mssp.engine import store
from mssp.engine.state import HostState, RunState
from mssp.engine.store import HostRow

if TYPE_CHECKING:
    from mssp.engine.drive import RunDriver


async def offline_phase(driver: RunDriver) -> None:
    """Wait for parked hosts to come back (presence events, periodic probes) or expire."""
    await driver.write(lambda tx: store.set_run(tx, driver.run_id, RunState.WAITING))
    if not driver.settled.done():
        driver.settled.set_result(None)
    driver.engine.set_waiting(driver, True)
    try:
        while driver.parked and not driver.cancel_mode:
            wall = datetime.fromtimestamp(driver.engine.clock(), UTC)
            due = [r for r in driver.parked.values() if r.queued_until and r.queued_until <= wall]
            if due:
                await _expire(driver, due)
                continue
            soonest = min(r.queued_until for r in driver.parked.values() if r.queued_until)
            wait = min(driver.engine.probe_interval, (soonest - wall).total_seconds())
            driver.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(driver.wake.wait(), max(0.01, wait))
            if driver.cancel_mode:
                break
            woke = set(driver.presence)
            driver.presence.clear()
            wall = datetime.fromtimestamp(driver.engine.clock(), UTC)
            probe = [
                r
                for r in driver.parked.values()
                if r.queued_until
                and r.queued_until > wall
                and (not woke or tuple(r.host_name.split("/")[:2]) in woke)
            ]
            if probe and (woke or wait >= driver.engine.probe_interval):
                for row in probe:
                    del driver.parked[row.id]
                driver.engine.set_waiting(driver, False)
                await driver.run_batch(probe)
                driver.engine.set_waiting(driver, True)
        if driver.cancel_mode:
            await driver.cancel_queued()
    finally:
        driver.engine.set_waiting(driver, False)


async def _expire(driver: RunDriver, rows: list[HostRow]) -> None:
    ids = [r.id for r in rows]
    message = "offline queue TTL passed: the host never came back"
    await driver.write(
        lambda tx: store.settle_queued(tx, driver.run_id, HostState.EXPIRED, message, ids=ids)
    )
    for row in rows:
        del driver.parked[row.id]
        driver.counts[HostState.EXPIRED] += 1
        driver._publish(events.HostExpired(run_id=driver.run_id, host=row.host_name))
        driver._publish(
            events.HostStateChanged(
                run_id=driver.run_id, host=row.host_name, state="expired", previous="queued"
            )
        )
