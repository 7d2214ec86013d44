"""What the daemon announces besides backups: scheduled runs with failures, and site agents offline
longer than the threshold: one PROBLEM, one RECOVERED, delivered to a real local webhook."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from mssp.config import Settings
from mssp.daemon import Daemon, DaemonOptions
from mssp.engine.options import HostSummary, RunSummary
from mssp.events import AgentPresenceChanged, EventBus
from mssp.notify import Notifier, Target
from mssp.scheduler import Finished
from mssp.vault import Secret
from tests.backups.conftest import FakeClock, Webhook


class _NoEngine:
    """These tests never start a run; the daemon's scheduler must not touch the engine."""

    owner = "test"
    bus = EventBus()


def daemon_for(webhook: Webhook, clock: FakeClock) -> Daemon:
    notifier = Notifier([Target(Secret(webhook.url("tok")))])
    return Daemon(_NoEngine(), notifier, clock=clock,
                  options=DaemonOptions(agent_offline_after=timedelta(minutes=15)))  # fmt: skip


def summary(run_id: int, states: dict[str, str]) -> RunSummary:
    hosts = tuple(HostSummary(host=h, state=s, error="boom" if s == "failed" else "")
                  for h, s in states.items())  # fmt: skip
    counts: dict[str, int] = {}
    for state in states.values():
        counts[state] = counts.get(state, 0) + 1
    return RunSummary(run_id, "updates.apply", "all", "finished", counts, hosts)


async def titles(webhook: Webhook) -> list[str]:
    await asyncio.sleep(0.05)
    return [m["title"] for m in webhook.received]


async def test_failed_scheduled_runs_open_one_incident_per_client(
    db: Settings, webhook: Webhook
) -> None:
    daemon = daemon_for(webhook, FakeClock(datetime(2026, 11, 26, tzinfo=UTC)))
    bad = {"acme/hq/a": "failed", "acme/hq/b": "ok", "globex/x/c": "ok"}
    for run_id in (1, 2):  # failing twice: announced once
        await daemon.announce_run(Finished("patch", "updates.apply", run_id, False,
                                           summary(run_id, bad)))  # fmt: skip
    assert await titles(webhook) == [
        "PROBLEM [acme] scheduled updates.apply (patch) failed on 1 host(s)"
    ]
    assert "acme/hq/a: failed boom" in webhook.received[0]["message"]
    good = {"acme/hq/a": "ok", "acme/hq/b": "ok", "globex/x/c": "ok"}
    await daemon.announce_run(Finished("patch", "updates.apply", 3, False, summary(3, good)))
    assert (await titles(webhook))[1:] == [
        "RECOVERED [acme] scheduled updates.apply (patch) failed on 1 host(s)"
    ]


async def test_agent_offline_past_the_threshold_is_announced_once(
    db: Settings, webhook: Webhook
) -> None:
    clock = FakeClock(datetime(2026, 11, 26, 9, 0, tzinfo=UTC))
    daemon = daemon_for(webhook, clock)
    daemon.agents.seen(AgentPresenceChanged(client="acme", site="hq", online=False))
    clock.set(clock() + timedelta(minutes=10))
    await daemon.check_agents()
    assert await titles(webhook) == []  # a short blip is not an incident
    clock.set(clock() + timedelta(minutes=6))
    await daemon.check_agents()
    await daemon.check_agents()
    assert await titles(webhook) == ["PROBLEM [acme] site agent acme/hq offline"]
    assert "offline since 2026-11-26 09:00 UTC" in webhook.received[0]["message"]
    daemon.agents.seen(AgentPresenceChanged(client="acme", site="hq", online=True))
    await daemon.check_agents()
    assert (await titles(webhook))[1:] == ["RECOVERED [acme] site agent acme/hq offline"]


async def test_a_blip_that_recovers_before_the_threshold_sends_nothing(
    db: Settings, webhook: Webhook
) -> None:
    clock = FakeClock(datetime(2026, 11, 26, 9, 0, tzinfo=UTC))
    daemon = daemon_for(webhook, clock)
    daemon.agents.seen(AgentPresenceChanged(client="acme", site="hq", online=False))
    clock.set(clock() + timedelta(minutes=5))
    daemon.agents.seen(AgentPresenceChanged(client="acme", site="hq", online=True))
    clock.set(clock() + timedelta(hours=1))
    await daemon.check_agents()
    assert await titles(webhook) == []
