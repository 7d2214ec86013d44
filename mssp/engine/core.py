"""The Engine: starts, resumes, retries, cancels and awaits fleet runs; owns their drivers, the
state writer and the background services (crash reconciliation, presence, remote cancels)."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from mssp import events
from mssp.config import Settings
from mssp.engine import auditing, recovery, reruns, store
from mssp.engine.auditing import RunAudit
from mssp.engine.drive import RunDriver
from mssp.engine.hosts import HostSource, StoreHosts, select_hosts
from mssp.engine.options import RunOptions, RunSummary
from mssp.engine.queries import load_summary
from mssp.engine.runner import ConnectionSource, SecretSource
from mssp.engine.state import RunState
from mssp.engine.waves import plan_waves
from mssp.errors import AuditError, NotFoundError, RunError, UsageError
from mssp.inventory import HostRecord
from mssp.models.runs import Run
from mssp.tasks.base import Task, get_task

log = logging.getLogger(__name__)

#: seconds between checks for cancels asked by another process
REMOTE_CANCEL_POLL = 0.5


class Engine:
    """Runs tasks over host selections. One per process; async, single event loop."""

    def __init__(
        self,
        settings: Settings,
        *,
        connections: ConnectionSource,
        bus: events.EventBus,
        hosts: HostSource | None = None,
        secrets: SecretSource | None = None,
        clock: Callable[[], float] = time.time,
        hook: Callable[[str], None] | None = None,
        owner: str | None = None,
        probe_interval: float = 60.0,
        cancel_grace: float = 10.0,
        adopt: bool = True,
    ) -> None:
        from mssp.engine.writer import StateWriter

        self.settings = settings
        self.connections = connections
        self.bus = bus
        self.hosts = hosts or StoreHosts()
        self.secrets = secrets
        self.clock = clock
        self._hook = hook
        self.owner = owner or recovery.process_identity()
        self.probe_interval = probe_interval
        """Seconds between attempts on hosts waiting in the offline queue."""
        self.cancel_grace = cancel_grace
        """Seconds running hosts get to finish after a graceful cancel."""
        self.adopt = adopt
        """Take over waiting runs (offline queue) nobody owns at start: the daemon does; a
        one-shot command (mssp exec) does not."""
        self.writer = StateWriter()
        self._drivers: dict[int, RunDriver] = {}
        self._driver_tasks: dict[int, asyncio.Task[None]] = {}
        self._waiting: set[RunDriver] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._services: list[asyncio.Task[None]] = []
        self._started = False
        self.reconciled: recovery.Reconciled | None = None

    # ---- lifecycle ---------------------------------------------------------------------
    def hook(self, point: str) -> None:
        """Test seam: called at named points of a run (the crash test kills the process here)."""
        if self._hook is not None:
            self._hook(point)

    async def start(self) -> recovery.Reconciled:
        """Reconcile runs left by dead processes, adopt waiting runs, start background services."""
        if self._started:
            return self.reconciled  # type: ignore[return-value]
        self._started = True
        self.writer.start()
        self.reconciled = await recovery.reconcile(self.writer.write, self.owner)
        self._services = [
            asyncio.create_task(self._presence_listener(), name="mssp-engine-presence"),
            asyncio.create_task(self._remote_cancels(), name="mssp-engine-cancels"),
        ]
        if self.adopt:
            self._services.append(asyncio.create_task(self._adopt_loop(), name="mssp-engine-adopt"))
        if self.adopt:
            await self.adopt_waiting()
        return self.reconciled

    async def aclose(self) -> None:
        """Stop: active runs are cancelled at once (true states recorded); waiting runs are
        released for another engine to adopt."""
        for driver in list(self._drivers.values()):
            if driver in self._waiting:
                driver.release_on_cancel = True
                self._driver_tasks[driver.run_id].cancel()
            else:
                driver.cancel(immediate=True)
        for task in list(self._driver_tasks.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in self._services:
            task.cancel()
        for task in self._services:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._services = []
        await self.writer.close()
        self._started = False

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- idle --------------------------------------------------------------------------
    def _update_idle(self) -> None:
        busy = any(d not in self._waiting for d in self._drivers.values())
        if busy:
            self._idle.clear()
        elif not self._idle.is_set():
            self._idle.set()
            self.bus.publish(events.EngineIdle())

    def set_waiting(self, driver: RunDriver, waiting: bool) -> None:
        (self._waiting.add if waiting else self._waiting.discard)(driver)
        self._update_idle()

    async def wait_idle(self) -> None:
        """Return when nothing runs in this engine (offline-queued hosts may still wait)."""
        while True:
            await self._idle.wait()
            await self.writer.flush()
            if self._idle.is_set():
                return

    def drives(self, run_id: int) -> bool:
        """This engine is driving ``run_id`` now."""
        return run_id in self._drivers

    # ---- runs --------------------------------------------------------------------------
    async def start_run(
        self,
        task: str,
        target: str,
        *,
        params: dict[str, Any] | None = None,
        options: RunOptions | None = None,
        hosts: Sequence[HostRecord] | None = None,
    ) -> int:
        """Validate, select, plan waves, record the run and its queued hosts, then start it.

        ``hosts`` replaces the inventory as the set ``target`` selects from. Nothing is written
        when the task, its parameters or the target are invalid.
        """
        options = options or RunOptions()
        params = dict(params or {})
        task_obj = get_task(task)(params)
        pool = list(hosts) if hosts is not None else await self.hosts.load_hosts()
        selected = select_hosts(target, pool)
        if options.limit:
            selected = select_hosts(options.limit, selected)
        if not selected:
            raise UsageError(
                f"no host matches {target!r}"
                + (f" limited by {options.limit!r}" if options.limit else "")
            )
        return await self.create(task_obj, target, task_obj.params, options, selected, None)

    async def create(
        self,
        task: Task,
        target: str,
        params: dict[str, Any],
        options: RunOptions,
        selected: Sequence[HostRecord],
        retry_of: int | None,
    ) -> int:
        """Audit, record and launch a run over hosts already selected (start_run, retry)."""
        await self.start()
        waves = plan_waves(selected, batch=options.batch_size, canary=options.canary)
        # The intent comes first: when it cannot be written (AuditError) nothing is created.
        action = "run.retry" if retry_of is not None else "run.start"
        trail = RunAudit(
            action,
            target,
            await auditing.run_intent(
                action,
                task=task.name,
                target=target,
                params=params,
                hosts=selected,
                check=options.check,
                retry_of=retry_of,
            ),
        )
        try:
            run_id = await store.create_run(
                task=task.name,
                target=target,
                params=params,
                options=options,
                waves=waves,
                owner=self.owner,
                started_by=f"{getpass.getuser()}@{socket.gethostname()}",
                retry_of=retry_of,
            )
        except BaseException as exc:
            await auditing.run_outcome(
                trail, run_id=None, result="failed", message=f"not created: {type(exc).__name__}"
            )
            raise
        self.hook("run-created")
        self.bus.publish(
            events.RunStarted(
                run_id=run_id, task=task.name, target=target, host_count=len(selected)
            )
        )
        self.launch(run_id, task, options, {h.full_name: h for h in selected}, trail)
        return run_id

    def launch(
        self,
        run_id: int,
        task: Task,
        options: RunOptions,
        hosts: dict[str, HostRecord],
        trail: RunAudit,
    ) -> RunDriver:
        """Drive a recorded run in this engine (its intent entries already written)."""
        driver = RunDriver(self, run_id, task, options, hosts)
        driver.audit = trail
        self._drivers[run_id] = driver
        self._update_idle()
        task_ = asyncio.create_task(self._drive(driver), name=f"mssp-run-{run_id}")
        self._driver_tasks[run_id] = task_
        return driver

    async def _drive(self, driver: RunDriver) -> None:
        try:
            await driver.drive()  # writes its outcome entries as it finishes
        except asyncio.CancelledError:
            if driver.release_on_cancel:  # engine closing: leave the run for another engine
                await self.writer.write(
                    lambda tx: store.set_run(tx, driver.run_id, RunState.WAITING, owner="")
                )
                await self._audit_end(driver, "released", "left waiting for another engine")
            raise
        except Exception as exc:
            log.exception("run %s stopped on an error; its states stay as recorded", driver.run_id)
            await self._audit_end(driver, "error", f"stopped on an error: {type(exc).__name__}")
        finally:
            self._drivers.pop(driver.run_id, None)
            self._driver_tasks.pop(driver.run_id, None)
            self._waiting.discard(driver)
            self._update_idle()

    async def _audit_end(self, driver: RunDriver, result: str, message: str) -> None:
        if driver.audit is not None:
            await auditing.run_outcome(
                driver.audit, run_id=driver.run_id, result=str(result), message=message
            )
            driver.audit = None

    async def wait(self, run_id: int, *, include_offline: bool = False) -> RunSummary:
        """Await the run's end, or the point where only offline-queued hosts remain (unless
        ``include_offline``: then until those too have run, expired or been cancelled)."""
        driver = self._drivers.get(run_id)
        task = self._driver_tasks.get(run_id)
        if driver is not None and task is not None:
            if include_offline:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(task)
            else:
                await asyncio.shield(driver.settled)
                if driver not in self._waiting:
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.shield(task)
        await self.writer.flush()
        return await load_summary(run_id)

    async def cancel(self, run_id: int, *, immediate: bool = False) -> None:
        """Cancel a run: queued hosts cancelled; running ones finish within the grace period
        (or stop at once with ``immediate``). Works on runs owned by another live process too:
        that process notices within a second."""
        driver = self._drivers.get(run_id)
        if driver is not None:
            await auditing.record_cancel(run_id, immediate=immediate)
            if driver.cancel_mode is None:
                await self.writer.write(lambda tx: store.set_run(tx, run_id, RunState.CANCELLING))
            driver.cancel(immediate=immediate)
            return
        run = await Run.get_or_none(id=run_id)
        if run is None:
            raise NotFoundError(f"no run {run_id}")
        if run.state not in (
            RunState.QUEUED,
            RunState.RUNNING,
            RunState.WAITING,
            RunState.CANCELLING,
            RunState.INTERRUPTED,
        ):
            raise RunError(f"run {run_id} is already {run.state}")
        await auditing.record_cancel(run_id, immediate=immediate)
        if run.owner and run.owner != self.owner and recovery.owner_alive(run.owner):
            await self.writer.write(lambda tx: store.set_run(tx, run_id, RunState.CANCELLING))
            return

        async def cancel_now(tx: Any) -> None:
            await recovery.reconcile_run(tx, run_id, RunState.CANCELLING, "cancelled")

        await self.writer.write(cancel_now)

    async def resume(self, run_id: int, *, rerun_interrupted: bool = False) -> int:
        """Take over a run whose process died (or that waits): run its queued hosts
        (mssp.engine.reruns.resume)."""
        return await reruns.resume(self, run_id, rerun_interrupted=rerun_interrupted)

    async def adopt_waiting(self) -> list[int]:
        """Take over waiting runs (offline queue) nobody owns; returns their ids."""
        adopted = []
        for run in await Run.filter(state=RunState.WAITING, owner="").values("id"):
            try:
                adopted.append(await self.resume(run["id"]))
            except RunError:
                continue
            except AuditError as exc:  # fail closed: the run stays waiting, unowned
                log.error("run %s not adopted: %s", run["id"], exc.message)
        return adopted

    async def retry(self, run_id: int, *, which: Sequence[str]) -> int:
        """A new run of ``run_id``'s task, parameters and options over its hosts that ended in
        ``which`` (mssp.engine.reruns.retry)."""
        return await reruns.retry(self, run_id, which=which)

    # ---- background services -----------------------------------------------------------
    async def _presence_listener(self) -> None:
        async with self.bus.subscribe() as queue:
            while True:
                event = await queue.get()
                if isinstance(event, events.AgentPresenceChanged) and event.online:
                    for driver in list(self._drivers.values()):
                        driver.on_presence(event.client, event.site)

    async def _adopt_loop(self) -> None:
        """Waiting runs released later (a `mssp exec --queue-offline` that exited) are adopted
        on the next probe interval."""
        while True:
            await asyncio.sleep(self.probe_interval)
            try:
                await self.adopt_waiting()
            except Exception as exc:  # the database is busy or closing: try next time
                log.debug("adopting waiting runs failed: %s", exc)

    async def _remote_cancels(self) -> None:
        while True:
            await asyncio.sleep(REMOTE_CANCEL_POLL)
            ids = [i for i, d in self._drivers.items() if d.cancel_mode is None]
            if not ids:
                continue
            try:
                asked = await Run.filter(id__in=ids, state=RunState.CANCELLING).values_list(
                    "id", flat=True
                )
            except Exception as exc:  # the database is busy or closing: ask again next time
                log.debug("cancel poll failed: %s", exc)
                continue
            for run_id in asked:
                driver = self._drivers.get(run_id)
                if driver is not None:
                    driver.cancel()
