"""`mssp daemon`: runs due schedules through the engine and turns outcomes into notifications.

What it notifies (through mssp.notify, so each problem is one PROBLEM message and one RECOVERED
message, per client, however often it is seen):
- a backup verification that is not VERIFIED (key ``backup:<host>``), cleared by a VERIFIED one;
- a scheduled run with failed, unreachable or timed-out hosts (``run:<schedule>:<client>``);
- a site agent offline longer than a threshold (``agent:<client>/<site>``), from the engine
  bus's AgentPresenceChanged events, which the relay's presence watcher publishes
  (mssp.connectors.relay_ops.PresenceWatcher, started when a relay is configured).
It also takes the runs `mssp exec` and `mssp run` hand to it (mssp.handoff): they then start
without imports or a vault unlock of their own, and reuse its open connections.
It runs in the foreground (Ctrl-C or SIGTERM stops it cleanly); ``--install-unit`` writes a
systemd user unit that runs the same command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from mssp.backups.history import VERIFY_TASK, CheckRecord, record_run, sync_checks
from mssp.events import AgentPresenceChanged, EventBus
from mssp.notify import Notifier, Target
from mssp.output import neutralise
from mssp.scheduler import Clock, Finished, Scheduler, utcnow

log = logging.getLogger(__name__)

NOTIFY_KIND = "notify-url"
"""Credential kind of an Apprise URL in the vault."""
FAILURE_STATES = ("failed", "unreachable", "timeout", "expired")


async def notify_targets(vault: Any) -> list[Target]:
    """Every notification URL in the vault: global ones, and per-client ones for their client."""
    from mssp.models.inventory import Credential
    from mssp.store.credentials import get_secret

    targets = []
    for row in await Credential.filter(kind=NOTIFY_KIND).prefetch_related("client").order_by("id"):
        client = row.client.slug if row.client else None
        targets.append(Target(url=await get_secret(vault, row.id), client=client, name=row.name))
    return targets


def backup_message(check: CheckRecord) -> str:
    """The body of a backup notification: the verdict and its evidence, never a secret."""
    evidence = check.evidence or {}
    lines = [f"{check.host}: {check.state}", check.reason, ""]
    latest = evidence.get("latest") or {}
    if latest:
        lines.append(f"newest snapshot: {latest.get('short_id', '?')} at {latest.get('time', '?')}")
    if evidence.get("repository"):
        lines.append(f"repository: {evidence['repository']}")
    verify_check = evidence.get("check") or {}
    if verify_check:
        lines.append(
            f"read subset {verify_check.get('subset')}: {verify_check.get('packs_read', 0)} packs, "
            f"{verify_check.get('bytes_read', 0)} bytes"
        )
    for item in evidence.get("restored") or ():
        lines.append(f"restored {item.get('role')} {item.get('path')}: {item.get('sha256') or '-'}")
    lines.append(f"checked at {check.checked_at:%Y-%m-%d %H:%M} UTC (run {check.run_id})")
    return neutralise("\n".join(lines))


class AgentWatch:
    """Which site agents are offline since when, from AgentPresenceChanged events."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.offline_since: dict[tuple[str, str], datetime] = {}
        self.announced: set[tuple[str, str]] = set()
        self.back: list[tuple[str, str]] = []

    def seen(self, event: AgentPresenceChanged) -> None:
        site = (event.client, event.site)
        if event.online:
            self.offline_since.pop(site, None)
            if site in self.announced:
                self.announced.discard(site)
                self.back.append(site)
        else:
            self.offline_since.setdefault(site, self.clock())

    def overdue(self, threshold: timedelta) -> list[tuple[str, str]]:
        now = self.clock()
        return [
            site
            for site, since in sorted(self.offline_since.items())
            if now - since >= threshold and site not in self.announced
        ]


@dataclass(frozen=True)
class DaemonOptions:
    poll: float = 30.0
    """Longest sleep between scheduler ticks (seconds)."""
    agent_offline_after: timedelta = timedelta(minutes=15)


class Daemon:
    """The scheduler plus notifications, around one engine."""

    def __init__(
        self,
        engine: Any,
        notifier: Notifier,
        *,
        clock: Clock = utcnow,
        options: DaemonOptions | None = None,
    ) -> None:
        self.engine = engine
        self.notifier = notifier
        self.clock = clock
        self.options = options or DaemonOptions()
        self.scheduler = Scheduler(engine, clock=clock, on_finished=self.handle_finished)
        self.agents = AgentWatch(clock)

    # ---- outcomes → notifications ------------------------------------------------------
    async def handle_finished(self, done: Finished) -> None:
        if done.task == VERIFY_TASK:
            await self.announce_checks(await record_run(done.run_id))
            return
        await self.announce_run(done)

    async def announce_checks(self, checks: Iterable[CheckRecord]) -> None:
        newest: dict[str, CheckRecord] = {}
        for check in checks:
            if check.host not in newest or check.checked_at >= newest[check.host].checked_at:
                newest[check.host] = check
        for check in newest.values():
            key = f"backup:{check.host}"
            body = backup_message(check)
            if check.state == "VERIFIED":
                await self.notifier.resolved(key, body=body)
            else:
                await self.notifier.problem(
                    key,
                    client=check.client,
                    kind="backup",
                    subject=f"backup of {check.host} is {check.state}",
                    body=body,
                )

    async def announce_run(self, done: Finished) -> None:
        by_client: dict[str, list[Any]] = {}
        for host in done.summary.hosts:
            by_client.setdefault(host.host.split("/", 1)[0], []).append(host)
        for client, hosts in sorted(by_client.items()):
            key = f"run:{done.schedule}:{client}"
            bad = [h for h in hosts if h.state in FAILURE_STATES]
            if not bad:
                await self.notifier.resolved(
                    key,
                    body=f"scheduled {done.task} ({done.schedule}) ran cleanly: run {done.run_id}",
                )
                continue
            lines = [f"{h.host}: {h.state} {h.error}".rstrip() for h in bad[:20]]
            if len(bad) > 20:
                lines.append(f"... and {len(bad) - 20} more")
            await self.notifier.problem(
                key,
                client=client,
                kind="run",
                subject=f"scheduled {done.task} ({done.schedule}) failed on {len(bad)} host(s)",
                body=neutralise("\n".join([f"run {done.run_id}", *lines])),
            )

    async def check_agents(self) -> None:
        threshold = self.options.agent_offline_after
        for client, site in self.agents.overdue(threshold):
            self.agents.announced.add((client, site))
            since = self.agents.offline_since[(client, site)]
            await self.notifier.problem(
                f"agent:{client}/{site}",
                client=client,
                kind="agent",
                subject=f"site agent {client}/{site} offline",
                body=f"the agent of {client}/{site} has been offline since "
                f"{since:%Y-%m-%d %H:%M} UTC",
            )
        while self.agents.back:
            client, site = self.agents.back.pop(0)
            await self.notifier.resolved(
                f"agent:{client}/{site}", body=f"the agent of {client}/{site} is back online"
            )

    # ---- running -----------------------------------------------------------------------
    async def catch_up(self) -> None:
        """Verifications finished while no daemon ran (or run by hand) count too."""
        await self.announce_checks(await sync_checks())

    async def _listen(self, bus: EventBus) -> None:
        async with bus.subscribe() as queue:
            while True:
                event = await queue.get()
                if isinstance(event, AgentPresenceChanged):
                    self.agents.seen(event)

    async def _agent_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.check_agents()
            except Exception:  # notifications must never stop the daemon
                log.exception("agent notifications failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.options.poll)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; every background task is cancelled and awaited."""
        await self.engine.start()
        await self.catch_up()
        tasks = [
            asyncio.create_task(self._listen(self.engine.bus), name="mssp-daemon-presence"),
            asyncio.create_task(self._agent_loop(stop), name="mssp-daemon-agents"),
        ]
        try:
            await self.scheduler.run(stop, max_sleep=self.options.poll)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.scheduler.aclose()


# ---- composition: the real daemon ----------------------------------------------------------
async def serve(
    settings: Any, vault: Any, stop: asyncio.Event, *, options: DaemonOptions | None = None
) -> None:
    """Open the database, the connections and the engine; run the daemon until ``stop``."""
    from mssp import db
    from mssp.connections import ConnectionManager, raise_fd_limit
    from mssp.connectors.relay import manager_options, provider_from_settings
    from mssp.connectors.relay_ops import PresenceWatcher
    from mssp.engine import Engine
    from mssp.handoff import HandoffServer
    from mssp.store.credentials import VaultCredentialResolver
    from mssp.store.hostkeys import DbHostKeyStore
    from mssp.store.secrets import VaultSecretSource

    async with db.database(settings):
        relay = provider_from_settings(settings, vault)
        raise_fd_limit(settings)
        manager = ConnectionManager(
            settings,
            credentials=VaultCredentialResolver(vault),
            host_keys=DbHostKeyStore(),
            **manager_options(relay),
        )
        bus = EventBus()
        engine = Engine(settings, connections=manager, bus=bus, secrets=VaultSecretSource(vault))
        daemon = Daemon(engine, Notifier(await notify_targets(vault)), options=options)
        # Agent presence from the relay keeps the links known, wakes the offline queue when an
        # agent returns (AgentPresenceChanged) and feeds the agent-offline notifications.
        watcher = PresenceWatcher(relay, bus) if relay is not None else None
        # `mssp exec` / `mssp run` hand their runs to this engine (mssp.handoff).
        handoff = HandoffServer(engine, settings)
        try:
            await handoff.start()  # first: a second daemon on this home stops before any work
            await engine.start()
            if watcher is not None:
                watcher.start()
            await daemon.run(stop)
        finally:
            handoff.stop_listening()
            if watcher is not None:
                await watcher.aclose()
            await engine.aclose()  # runs still going are cancelled, their states recorded
            await handoff.aclose()  # their clients get the summaries
            await manager.aclose()
            if relay is not None:
                await relay.aclose()


UNIT_TEMPLATE = """\
[Unit]
Description=mssp daemon: scheduled runs, backup verification, notifications
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={exec_start}
{environment}Restart=on-failure
RestartSec=30
# the vault is unlocked unattended from settings.vault_key_file (mode 0600); see `mssp init`
NoNewPrivileges=yes

[Install]
WantedBy=default.target
"""


def unit_text(executable: str, mssp_home: str | None, poll: float) -> str:
    import shlex

    environment = f"Environment=MSSP_HOME={shlex.quote(mssp_home)}\n" if mssp_home else ""
    return UNIT_TEMPLATE.format(
        exec_start=f"{shlex.quote(executable)} daemon --poll {poll:g}", environment=environment
    )


def install_unit(path: Any, executable: str, mssp_home: str | None, poll: float) -> None:
    """Write the systemd user unit (atomically; the folder is created)."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(unit_text(executable, mssp_home, poll), encoding="utf-8")
    os.replace(tmp, path)
