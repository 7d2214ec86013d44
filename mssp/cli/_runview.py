"""How a fleet run looks in the terminal: the live progress bar, Ctrl-C handling, JSON lines, and
the per-host recap. Used by mssp/cli/runs.py."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import click

from mssp.cli.common import emit_json
from mssp.errors import UsageError
from mssp.events import Event, EventBus, HostStateChanged, RunFinished, RunHalted, RunStarted
from mssp.events import to_json as event_to_json
from mssp.output import neutralise

if TYPE_CHECKING:
    from mssp.engine import Engine, RunSummary

STATE_ORDER = (
    "ok",
    "changed",
    "failed",
    "unreachable",
    "timeout",
    "skipped",
    "cancelled",
    "expired",
    "interrupted",
    "running",
    "queued",
)


# ---- the engine in a command --------------------------------------------------------------
@dataclasses.dataclass
class View:
    """How a command shows a run: progress bar, JSON document, or JSON lines."""

    as_json: bool = False
    jsonl: bool = False
    verbose: bool = False
    show_output: bool = False
    interrupts: int = 0

    @property
    def live(self) -> bool:
        return not (self.as_json or self.jsonl) and sys.stderr.isatty()


async def with_engine(
    settings: Any,
    work: Callable[[Engine], Awaitable[int]],
    *,
    needs_vault: bool = True,
    forks: int | None = None,
    per_client: int | None = None,
) -> int:
    """Open the database, the vault and a connection manager; run ``work``; close all."""
    from mssp import db
    from mssp.connections import ConnectionManager, raise_fd_limit
    from mssp.engine import Engine
    from mssp.store.credentials import VaultCredentialResolver
    from mssp.store.hostkeys import DbHostKeyStore
    from mssp.store.secrets import VaultSecretSource

    vault = None
    if needs_vault:
        from mssp.cli.init import open_vault

        vault = open_vault(settings)
    limits = settings.replace(
        forks=max(settings.forks, forks or 0),
        per_client_limit=max(settings.per_client_limit, per_client or 0),
    )
    from mssp.connectors.relay import manager_options, provider_from_settings

    relay = provider_from_settings(settings, vault)
    async with db.database(settings):
        raise_fd_limit(limits)
        manager = ConnectionManager(
            limits,
            credentials=VaultCredentialResolver(vault) if vault else _NoCredentials(),
            host_keys=DbHostKeyStore(),
            **manager_options(relay),
        )
        engine = Engine(
            settings,
            connections=manager,
            bus=EventBus(),
            adopt=False,
            secrets=VaultSecretSource(vault) if vault else None,
        )
        try:
            return await work(engine)
        finally:
            await engine.aclose()
            await manager.aclose()
            if relay is not None:
                await relay.aclose()


class _NoCredentials:
    async def resolve(self, host: Any) -> Any:
        raise UsageError("this command does not connect to hosts")


async def follow(engine: Engine, start: Callable[[], Awaitable[int]], view: View) -> int:
    """Start a run, show it live (bar, JSON lines), handle Ctrl-C, print the end; exit code."""
    loop = asyncio.get_running_loop()
    progress = Progress(view)
    async with engine.bus.subscribe(lossless=view.jsonl) as queue:
        run_id = await start()
        progress.run_id = run_id
        if view.live:
            click.echo(f"run {run_id} started; Ctrl-C cancels (twice: stop at once)", err=True)

        pending: set[asyncio.Task[None]] = set()

        def cancel(immediate: bool) -> None:
            task = loop.create_task(engine.cancel(run_id, immediate=immediate))
            pending.add(task)
            task.add_done_callback(pending.discard)

        signals = CancelOnSignals(view, cancel, f"{engine.cancel_grace:g}s")
        pump = asyncio.create_task(progress.pump(queue))
        try:
            summary = await engine.wait(run_id)
            await engine.wait_idle()
            await asyncio.sleep(0)  # let the pump see the last events
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            signals.remove()
        for event in _drain(queue):
            progress.handle(event)
    progress.clear()
    show_summary(summary, view)
    if view.interrupts > 1:
        return 130
    return summary.exit_code


class CancelOnSignals:
    """Ctrl-C once cancels a run gracefully, twice at once; SIGTERM/SIGHUP (a closed terminal,
    a service stop) at once. ``cancel(immediate)`` carries it out; ``remove()`` when the run ended.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, view: View, cancel: Callable[[bool], None], grace: str) -> None:
        self.view = view
        self.cancel = cancel
        self.grace = grace
        self.loop = asyncio.get_running_loop()
        for signum in self.SIGNALS:
            handler = self.interrupt if signum == signal.SIGINT else self.terminate
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self.loop.add_signal_handler(signum, handler)

    def interrupt(self) -> None:
        view = self.view
        view.interrupts += 1
        immediate = view.interrupts > 1
        if view.live or not view.jsonl:
            msg = (
                "stopping now: running hosts are cancelled"
                if immediate
                else f"cancelling: running hosts get {self.grace} to finish "
                "(Ctrl-C again to stop at once)"
            )
            click.echo("\n" + msg, err=True)
        self.cancel(immediate)

    def terminate(self) -> None:
        self.view.interrupts = max(self.view.interrupts, 1)
        self.interrupt()

    def remove(self) -> None:
        for signum in self.SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self.loop.remove_signal_handler(signum)


def _drain(queue: asyncio.Queue[Event]) -> list[Event]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def _event_json(event: Event) -> str:
    return json.dumps(event_to_json(event), default=str)


class Progress:
    """A one-line live bar with counts by state (stderr, terminals only), or a JSON-lines feed."""

    def __init__(self, view: View) -> None:
        self.view = view
        self.run_id = 0
        self.states: dict[str, str] = {}
        self.started = time.monotonic()
        self.drawn = 0.0
        self.width = 0
        self.total = 0

    async def pump(self, queue: asyncio.Queue[Event]) -> None:
        ticker = asyncio.create_task(self.tick())
        try:
            while True:
                self.handle(await queue.get())
        finally:
            ticker.cancel()

    async def tick(self) -> None:
        """Redraw at least every half second: the clock moves, and a change that came in less
        than 0.1 s after the last draw is shown even if no further event follows."""
        while self.view.live:
            await asyncio.sleep(0.5)
            self.draw()

    def handle(self, event: Event) -> None:
        if getattr(event, "run_id", self.run_id) != self.run_id:
            return
        if self.view.jsonl:
            click.echo(_event_json(event))
        if isinstance(event, RunStarted):
            self.total = event.host_count
        if isinstance(event, HostStateChanged):
            self.states[event.host] = event.state
        if isinstance(event, RunHalted) and not self.view.as_json and not self.view.jsonl:
            self.clear()
            click.echo(f"HALTED: {event.reason}", err=True)
        if self.view.live and (
            time.monotonic() - self.drawn > 0.1 or isinstance(event, RunFinished)
        ):
            self.draw()

    def draw(self) -> None:
        self.drawn = time.monotonic()
        counts: dict[str, int] = {}
        for state in self.states.values():
            counts[state] = counts.get(state, 0) + 1
        total = max(self.total, len(self.states), 1)
        counts["queued"] = counts.get("queued", 0) + total - len(self.states)
        done = sum(v for k, v in counts.items() if k not in ("running", "queued"))
        bar = "#" * int(20 * done / total)
        parts = "  ".join(f"{s} {counts[s]}" for s in STATE_ORDER if counts.get(s))
        line = f"[{bar:<20}] {done}/{total}  {parts}  {time.monotonic() - self.started:.1f}s"
        self.width = max(self.width, len(line))
        sys.stderr.write("\r" + line.ljust(self.width))
        sys.stderr.flush()

    def clear(self) -> None:
        if self.view.live and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()
            self.width = 0


def show_summary(summary: RunSummary, view: View) -> None:
    """The end of a run: one JSON document, a final JSON line, or a per-host recap."""
    if view.as_json:
        emit_json(summary.to_json())
        return
    if view.jsonl:
        click.echo(json.dumps({"event": "RunSummary", **summary.to_json()}, default=str))
        return
    for host in summary.hosts:
        status = f"{host.host} | {host.state.upper()}"
        if host.exit_status is not None:
            status += f" | rc={host.exit_status}"
        if host.error:
            status += f" | {neutralise(host.error)}"
        click.echo(status)
        if view.show_output or view.verbose or host.state in ("failed", "timeout"):
            for stream in (host.stdout, host.stderr):
                for line in stream.rstrip("\n").splitlines():
                    click.echo(f"    {line}")
    counts = "  ".join(f"{s}={summary.counts[s]}" for s in STATE_ORDER if summary.counts.get(s))
    click.echo(f"\nrun {summary.run_id} {summary.state}: {counts}")
    if summary.message:
        click.echo(neutralise(summary.message))
    waiting = [h for h in summary.hosts if h.state == "queued" and h.queued_until]
    if waiting:
        until = max(h.queued_until or "" for h in waiting)
        click.echo(
            f"{len(waiting)} host(s) wait in the offline queue until {until}: "
            "they run when they come back while an mssp engine runs (mssp daemon)."
        )
