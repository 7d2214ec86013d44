"""The scheduler loop: start due schedules through the engine, one run per schedule at a time.

``next_run()`` and the missed-run policy ``due()`` are pure (mssp.cron). This module adds the
state around them, kept in the database so several processes (the daemon, a second daemon by
mistake, a CLI) agree:
- a schedule is claimed by one conditional UPDATE (``running`` false → true, and the planned time
  it last ran for unchanged), so two schedulers never start the same planned run, and a schedule
  whose run is still in flight is never started again (no overlap);
- a laptop asleep at 02:30 wakes at 07:10 and runs the schedule ONCE, marked late, whatever
  number of planned times it slept through (they are counted in ``last_missed``);
- a claim left by a dead process, or by a run that has ended, is released on the next tick.
The clock is injected: tests drive it by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from mssp import cron
from mssp.engine.options import RunOptions, RunSummary
from mssp.errors import MsspError

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
GRACE = timedelta(minutes=5)
"""A run starting later than this after its planned time is marked late."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class RunStarter(Protocol):
    """What the scheduler needs of mssp.engine.Engine."""

    owner: str

    async def start_run(
        self, task: str, target: str, *, params: dict[str, Any], options: RunOptions
    ) -> int: ...

    async def wait(self, run_id: int) -> RunSummary: ...


@dataclass(frozen=True)
class Fired:
    """A schedule the tick acted on."""

    schedule: str
    planned: datetime
    late: bool
    missed: int
    """Planned times folded into this run besides the one it stands for."""
    run_id: int | None = None
    error: str = ""
    """Why no run was started (no host matches, bad parameters...)."""


@dataclass(frozen=True)
class Finished:
    """A scheduled run that ended (handed to the daemon for notifications)."""

    schedule: str
    task: str
    run_id: int
    late: bool
    summary: RunSummary


OnFinished = Callable[[Finished], Awaitable[None]]


class Scheduler:
    """Starts due schedules through an engine and watches their runs to release the lock."""

    def __init__(
        self,
        engine: RunStarter,
        *,
        clock: Clock = utcnow,
        grace: timedelta = GRACE,
        on_finished: OnFinished | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.grace = grace
        self.on_finished = on_finished
        self._watchers: dict[int, asyncio.Task[None]] = {}
        """Schedule id → the task awaiting its run (the lock is held while it exists)."""
        self._jobs: set[asyncio.Task[None]] = set()
        """Every watcher until it has fully finished (handlers included)."""
        self._wake = asyncio.Event()

    # ---- one pass ----------------------------------------------------------------------
    async def tick(self) -> list[Fired]:
        """Start every schedule due now (at most one run each); release stale claims."""
        from mssp.models.backups import Schedule

        now = self.clock()
        fired = []
        for row in await Schedule.filter(enabled=True).order_by("name"):
            if row.running:
                await self._release_if_stale(row)
                continue
            try:
                decision = cron.due(
                    row.cron, row.timezone, last_planned=row.last_planned, now=now, grace=self.grace
                )
            except (MsspError, ValueError, KeyError) as exc:  # a bad zone or expression
                log.warning("schedule %s cannot be evaluated: %s", row.name, exc)
                continue
            if not decision.run or decision.scheduled_for is None:
                continue
            result = await self._fire(row, decision, now)
            if result is not None:
                fired.append(result)
        return fired

    async def _fire(self, row: Any, decision: cron.Due, now: datetime) -> Fired | None:
        from mssp.models.backups import Schedule

        planned = decision.scheduled_for
        assert planned is not None
        claimed = await Schedule.filter(
            id=row.id, running=False, enabled=True, last_planned=row.last_planned
        ).update(
            running=True,
            running_owner=self.engine.owner,
            last_planned=planned,
            last_late=decision.late,
            last_missed=decision.missed,
            last_started_at=now,
            last_run_id=None,
            last_error="",
        )
        if not claimed:
            return None  # another scheduler took it first
        late = " (late)" if decision.late else ""
        try:
            options = RunOptions.from_json(row.options or {})
            run_id = await self.engine.start_run(
                row.task, row.target, params=dict(row.params or {}), options=options
            )
        except MsspError as exc:
            await Schedule.filter(id=row.id).update(
                running=False, running_owner="", last_error=exc.message[:500]
            )
            log.warning("schedule %s%s could not start: %s", row.name, late, exc.message)
            return Fired(row.name, planned, decision.late, decision.missed, error=exc.message)
        await Schedule.filter(id=row.id).update(last_run_id=run_id)
        log.info("schedule %s%s started run %s", row.name, late, run_id)
        self._watch(row.id, row.name, row.task, run_id, decision.late)
        return Fired(row.name, planned, decision.late, decision.missed, run_id=run_id)

    def _watch(self, schedule_id: int, name: str, task: str, run_id: int, late: bool) -> None:
        async def watch() -> None:
            try:
                summary = await self.engine.wait(run_id)
            except Exception:
                log.exception("waiting for run %s (schedule %s) failed", run_id, name)
                self._watchers.pop(schedule_id, None)
                await self._release(schedule_id)
                return
            self._watchers.pop(schedule_id, None)
            await self._release(schedule_id)
            await self._finished(Finished(name, task, run_id, late, summary))

        job = asyncio.create_task(watch(), name=f"mssp-schedule-{name}")
        self._watchers[schedule_id] = job
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _release(self, schedule_id: int) -> None:
        from mssp.models.backups import Schedule

        await Schedule.filter(id=schedule_id).update(
            running=False, running_owner="", last_finished_at=self.clock()
        )
        self._wake.set()

    async def _finished(self, done: Finished) -> None:
        if self.on_finished is None:
            return
        try:
            await self.on_finished(done)
        except Exception:  # a failing notification must not stop the schedule
            log.exception(
                "handling the end of run %s (schedule %s) failed", done.run_id, done.schedule
            )

    async def _release_if_stale(self, row: Any) -> None:
        """A claim whose run ended (or whose owner died) is released; never one still running."""
        from mssp.engine.queries import load_summary
        from mssp.engine.recovery import owner_alive
        from mssp.engine.state import FINAL_RUN_STATES, RunState
        from mssp.models.backups import Schedule
        from mssp.models.runs import Run

        if row.id in self._watchers:
            return
        run = await Run.get_or_none(id=row.last_run_id) if row.last_run_id else None
        ended = run is not None and (
            run.state in {s.value for s in FINAL_RUN_STATES} or run.state == RunState.WAITING
        )
        if not ended and owner_alive(row.running_owner):
            return
        released = await Schedule.filter(
            id=row.id, running=True, running_owner=row.running_owner
        ).update(running=False, running_owner="", last_finished_at=self.clock())
        if released and run is not None and ended:
            log.info("schedule %s: run %s ended while nobody watched it", row.name, run.id)
            summary = await load_summary(run.id)
            await self._finished(Finished(row.name, row.task, run.id, row.last_late, summary))

    # ---- the loop ----------------------------------------------------------------------
    async def next_due(self) -> datetime | None:
        """When the earliest enabled schedule fires next (None: nothing scheduled)."""
        from mssp.models.backups import Schedule

        times = []
        for row in await Schedule.filter(enabled=True, running=False):
            with contextlib.suppress(MsspError, ValueError, KeyError):
                times.append(cron.next_run(row.cron, row.last_planned, row.timezone))
        return min(times, default=None)

    def wake(self) -> None:
        """Tick now (a schedule was added or a run ended)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event, *, max_sleep: float = 30.0) -> None:
        """Tick until ``stop`` is set; sleep until the next due time, at most ``max_sleep``."""
        while not stop.is_set():
            try:
                await self.tick()
                upcoming = await self.next_due()
            except MsspError as exc:  # the database is busy or gone for a moment
                log.warning("scheduler tick failed: %s", exc.message)
                upcoming = None
            delay = max_sleep
            if upcoming is not None:
                delay = min(max_sleep, max(0.0, (upcoming - self.clock()).total_seconds()))
            self._wake.clear()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait(
                    waiters, timeout=max(delay, 0.01), return_when=asyncio.FIRST_COMPLETED
                )
            for waiter in waiters:
                waiter.cancel()

    async def wait_runs(self) -> None:
        """Wait for every run this scheduler started to end and be handled (tests, shutdown)."""
        while self._jobs:
            await asyncio.gather(*list(self._jobs), return_exceptions=True)

    async def aclose(self) -> None:
        jobs = list(self._jobs)
        for job in jobs:
            job.cancel()
        for job in jobs:
            with contextlib.suppress(asyncio.CancelledError):
                await job
        self._watchers.clear()


# ---- schedules as data (the CLI and the dashboard use these) --------------------------------
@dataclass(frozen=True)
class ScheduleInfo:
    """A schedule as listings show it."""

    name: str
    cron: str
    timezone: str
    task: str
    target: str
    params: dict[str, Any]
    enabled: bool
    running: bool
    next_run: datetime | None
    last_planned: datetime
    last_run_id: int | None
    last_late: bool
    last_missed: int
    last_error: str

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        for key in ("next_run", "last_planned"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


def _info(row: Any) -> ScheduleInfo:
    upcoming = None
    if row.enabled:
        with contextlib.suppress(MsspError, ValueError, KeyError):
            upcoming = cron.next_run(row.cron, row.last_planned, row.timezone)
    return ScheduleInfo(
        name=row.name,
        cron=row.cron,
        timezone=row.timezone,
        task=row.task,
        target=row.target,
        params=dict(row.params or {}),
        enabled=row.enabled,
        running=row.running,
        next_run=upcoming,
        last_planned=row.last_planned,
        last_run_id=row.last_run_id,
        last_late=row.last_late,
        last_missed=row.last_missed,
        last_error=row.last_error,
    )


async def default_timezone(target: str) -> str:
    """The client's zone when the target selects hosts of exactly one client, else UTC."""
    from mssp.models.inventory import Client
    from mssp.selection import select
    from mssp.store.inventory import load_hosts

    clients = {h.client for h in select(target, await load_hosts())}
    if not clients and target.startswith("client:") and "," not in target and "&" not in target:
        clients = {target[len("client:") :].strip()}
    if len(clients) == 1:
        client = await Client.get_or_none(slug=next(iter(clients)))
        if client is not None and client.timezone:
            return client.timezone
    return "UTC"


async def add_schedule(
    name: str,
    *,
    cron_text: str,
    task: str,
    target: str,
    params: dict[str, Any],
    timezone: str | None = None,
    options: RunOptions | None = None,
    now: datetime | None = None,
) -> ScheduleInfo:
    """Validate everything (name, cron, zone, task, parameters, target), then store it."""
    import zoneinfo

    from mssp.db import write_transaction
    from mssp.errors import AlreadyExistsError, UsageError
    from mssp.models.backups import Schedule
    from mssp.selection import select
    from mssp.store.names import check_slug
    from mssp.tasks import get_task

    check_slug(name, "schedule name")
    expr = cron.parse(cron_text)
    get_task(task)(params)  # ParameterError names the first bad parameter
    select(target, [])  # InventoryError on a malformed expression
    zone = timezone or await default_timezone(target)
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"unknown time zone {zone!r} (use an IANA name such as Europe/Berlin)"
        ) from None
    async with write_transaction():
        if await Schedule.filter(name=name).exists():
            raise AlreadyExistsError(f"schedule {name!r} already exists")
        row = await Schedule.create(
            name=name,
            cron=expr.text,
            timezone=zone,
            task=task,
            target=target,
            params=params,
            options=(options or RunOptions()).to_json(),
            last_planned=now or utcnow(),
        )
    return _info(row)


async def list_schedules() -> list[ScheduleInfo]:
    from mssp.models.backups import Schedule

    return [_info(row) for row in await Schedule.all().order_by("name")]


async def _row(name: str) -> Any:
    from mssp.errors import NotFoundError
    from mssp.models.backups import Schedule

    row = await Schedule.get_or_none(name=name)
    if row is None:
        raise NotFoundError(f"no schedule {name!r}")
    return row


async def set_enabled(name: str, enabled: bool, *, now: datetime | None = None) -> ScheduleInfo:
    """Enable or disable. Enabling starts counting from now: the disabled time is not 'missed'."""
    from mssp.models.backups import Schedule

    row = await _row(name)
    changes: dict[str, Any] = {"enabled": enabled}
    if enabled and not row.enabled:
        changes["last_planned"] = now or utcnow()
    await Schedule.filter(id=row.id).update(**changes)
    return _info(await _row(name))


async def remove_schedule(name: str) -> None:
    """Delete a schedule; a run it started goes on (cancel it with `mssp runs cancel`)."""
    row = await _row(name)
    await row.delete()
