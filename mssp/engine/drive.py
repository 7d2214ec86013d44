"""One run, driven to its end: waves in order, hosts dispatched within the global and per-client
limits (state committed before dispatch), --max-fail between waves, cancellation, and the offline
queue phase. The Engine owns one RunDriver per active run."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from mssp import events
from mssp.engine import recovery, store
from mssp.engine.auditing import RunAudit, run_outcome
from mssp.engine.options import RunOptions
from mssp.engine.queue import offline_phase
from mssp.engine.runner import HostOutcome, HostWork, run_host
from mssp.engine.state import FAILURE_STATES, FINAL_HOST_STATES, HostState, RunState
from mssp.engine.store import HostRow
from mssp.engine.waves import max_fail_exceeded
from mssp.engine.writer import Merged
from mssp.errors import DatabaseError, MsspError
from mssp.inventory import HostRecord
from mssp.output import neutralise, safe_output
from mssp.tasks.base import Task

if TYPE_CHECKING:
    from mssp.engine.core import Engine

log = logging.getLogger(__name__)

#: seconds between attempts to take a host another run holds
LOCK_RETRY = 0.5
#: seconds between checks that the holder of a busy host is still alive
STALE_SWEEP = 2.0
#: the error of a host whose final state could not be written at all
UNRECORDED = "the outcome could not be recorded (database error); see the log of the core"


class RunDriver:
    """Drives one run. ``cancel`` may be called at any time from the same event loop."""

    def __init__(
        self,
        engine: Engine,
        run_id: int,
        task: Task,
        options: RunOptions,
        hosts: dict[str, HostRecord],
    ) -> None:
        self.engine = engine
        self.run_id = run_id
        self.task = task
        self.options = options
        self.hosts = hosts
        settings = engine.settings
        self.forks = options.forks or settings.forks
        self.per_client = options.per_client or settings.per_client_limit
        self.timeout = options.timeout or settings.command_timeout
        self.output_cap = options.output_cap or settings.output_cap
        self.counts: Counter[str] = Counter()
        self.parked: dict[int, HostRow] = {}
        self.cancel_mode: str | None = None
        self._last_sweep = 0.0
        self.release_on_cancel = False
        """Set by an engine that closes while this run waits: leave the run for another engine."""
        self._running: dict[asyncio.Task[None], HostRow] = {}
        self._recording: set[asyncio.Task[None]] = set()
        """Host tasks past their work, recording the outcome: a cancel no longer reaches them."""
        self._done: asyncio.Queue[HostRow | None] = asyncio.Queue()
        self.wake = asyncio.Event()
        self.presence: set[tuple[str, str]] = set()
        self._grace_task: asyncio.Task[None] | None = None
        self.settled = asyncio.get_running_loop().create_future()
        """Resolved when the run finished, or only offline-queued hosts remain."""
        self.audit: RunAudit | None = None
        """The run's open intent entries (set by the engine), completed when the run ends."""

    # ---- control -----------------------------------------------------------------------
    def cancel(self, *, immediate: bool = False) -> None:
        first = self.cancel_mode is None
        self.cancel_mode = "immediate" if immediate else (self.cancel_mode or "graceful")
        if immediate:
            self._stop_working()
        elif first:
            self._grace_task = asyncio.create_task(self._grace())
        self._done.put_nowait(None)
        self.wake.set()

    async def _grace(self) -> None:
        await asyncio.sleep(self.engine.cancel_grace)
        self._stop_working()

    def _stop_working(self) -> None:
        """Cancel the hosts still at work; a host whose outcome is being recorded is left to
        finish that (its counts and events must match what the database says)."""
        for task in list(self._running):
            if task not in self._recording:
                task.cancel()

    def on_presence(self, client: str, site: str) -> None:
        """A site's agent came back: retry its parked hosts now."""
        if any(r.host_name.startswith(f"{client}/{site}/") for r in self.parked.values()):
            self.presence.add((client, site))
            self.wake.set()

    def _publish(self, event: events.Event) -> None:
        self.engine.bus.publish(event)

    async def write(self, op):  # type: ignore[no-untyped-def]
        return await self.engine.writer.write(op)

    # ---- the run -----------------------------------------------------------------------
    async def drive(self) -> None:
        try:
            await self._drive()
        finally:
            if self._grace_task is not None:
                self._grace_task.cancel()
            if not self.settled.done():
                self.settled.set_result(None)

    async def _drive(self) -> None:
        rows = await store.load_rows(self.run_id)
        self.counts.update(r.state for r in rows if r.state in FINAL_HOST_STATES)
        regular = [r for r in rows if r.state == HostState.QUEUED and r.queued_until is None]
        self.parked = {
            r.id: r for r in rows if r.state == HostState.QUEUED and r.queued_until is not None
        }
        waves = sorted({r.wave for r in regular})
        halted = ""
        for index, wave in enumerate(waves):
            if self.cancel_mode:
                break
            batch = [r for r in regular if r.wave == wave]
            self._publish(events.WaveStarted(run_id=self.run_id, wave=wave, host_count=len(batch)))
            await self.run_batch(batch)
            if self.cancel_mode or index == len(waves) - 1:
                continue
            failed = sum(self.counts[s] for s in FAILURE_STATES)
            finished = sum(self.counts[s] for s in FINAL_HOST_STATES)
            if max_fail_exceeded(failed, finished, self.options.max_fail):
                halted = (
                    f"halted after wave {wave + 1}: {failed} of {finished} hosts failed, "
                    f"more than --max-fail {self.options.max_fail:g}%"
                )
                skipped = await self.write(
                    lambda tx, why=halted: store.settle_queued(
                        tx, self.run_id, HostState.SKIPPED, why
                    )
                )
                self.counts[HostState.SKIPPED] += skipped
                self.parked.clear()
                self._publish(events.RunHalted(run_id=self.run_id, reason=halted, skipped=skipped))
                break
        if not halted and not self.cancel_mode and self.parked:
            await offline_phase(self)
        await self._finish(halted)

    async def _finish(self, halted: str) -> None:
        if self.cancel_mode:
            state, message = RunState.CANCELLED, "cancelled"
        elif halted:
            state, message = RunState.HALTED, halted
        else:
            state, message = RunState.FINISHED, ""

        # Every host task has ended by now: a host still "running" in the database is one whose
        # final write failed. A finished run never shows a host running.
        stuck = await self.write(
            lambda tx: store.settle_running(tx, self.run_id, HostState.INTERRUPTED, UNRECORDED)
        )
        if stuck:
            log.error("run %s: %d host(s) had no recorded outcome: interrupted", self.run_id, stuck)
        # The outcome entries are written before the run shows as ended, so whoever sees the
        # final state finds its audit trail complete.
        if self.audit is not None:
            await run_outcome(self.audit, run_id=self.run_id, result=state.value, message=message)
            self.audit = None
        await self.write(
            lambda tx: store.set_run(
                tx, self.run_id, state, message=message, owner="", finished=True
            )
        )
        self._publish(
            events.RunFinished(
                run_id=self.run_id, state=state.value, counts=self._counts(), message=message
            )
        )

    def _counts(self) -> dict[str, int]:
        return {s.value: self.counts[s.value] for s in HostState if self.counts[s.value]}

    # ---- dispatching within limits ----------------------------------------------------
    async def run_batch(self, rows: list[HostRow]) -> None:
        pending = list(rows)
        per_client: Counter[str] = Counter()
        busy_since: dict[int, float] = {}
        retry_at: dict[int, float] = {}
        while pending or self._running:
            if self.cancel_mode and pending:
                await self.cancel_queued()
                pending = []
            now = time.monotonic()
            picks: list[HostRow] = []
            free = self.forks - len(self._running)
            for row in pending:
                if free <= 0:
                    break
                if per_client[row.client] >= self.per_client or retry_at.get(row.id, 0) > now:
                    continue
                picks.append(row)
                per_client[row.client] += 1
                free -= 1
            if picks:
                pending = await self._dispatch(picks, pending, per_client, busy_since, retry_at)
                continue
            if not self._running and not pending:
                break
            # wake for the next finished host, or for the next try at a host another run holds
            waits = [retry_at[r.id] for r in pending if r.id in retry_at]
            wait = max(0.01, min(waits) - now) if waits else (None if self._running else 0.01)
            try:
                first = await asyncio.wait_for(self._done.get(), wait)
            except TimeoutError:
                continue
            for row in [first, *_drain(self._done)]:
                if row is not None:
                    per_client[row.client] -= 1

    async def _dispatch(
        self,
        picks: list[HostRow],
        pending: list[HostRow],
        per_client: Counter[str],
        busy_since: dict[int, float],
        retry_at: dict[int, float],
    ) -> list[HostRow]:
        unknown = [r for r in picks if r.host_name not in self.hosts]
        if unknown:
            await self._settle(unknown, HostState.SKIPPED, "host no longer in the inventory")
        known = [r for r in picks if r.host_name in self.hosts]
        marked = await self.write(
            lambda tx: store.mark_running(tx, self.run_id, self.engine.owner, known)
        )
        # The crash test kills the process here: committed running, nothing dispatched yet.
        self.engine.hook("after-running-commit")
        now = time.monotonic()
        if marked.busy and now - self._last_sweep > STALE_SWEEP:
            # A host held by a process that died (without a restart since) would wait forever:
            # reconcile such runs now, which also frees their locks.
            self._last_sweep = now
            await recovery.reconcile(self.engine.writer.write, self.engine.owner)
        expired_busy: list[HostRow] = []
        for row in known:
            if row.id in marked.running:
                task = asyncio.create_task(self._host(row), name=f"mssp-host-{row.host_name}")
                self._running[task] = row
                self._publish(
                    events.HostStateChanged(
                        run_id=self.run_id, host=row.host_name, state="running", previous="queued"
                    )
                )
            elif row.id in marked.busy:
                busy_since.setdefault(row.id, now)
                if now - busy_since[row.id] > self.timeout:
                    expired_busy.append(row)
                else:
                    retry_at[row.id] = now + LOCK_RETRY
        for row in picks:
            if row.id not in marked.running:
                per_client[row.client] -= 1
        if expired_busy:
            await self._settle(expired_busy, HostState.SKIPPED, "host busy: another run holds it")
        done = {r.id for r in picks} - set(marked.busy) | {r.id for r in expired_busy}
        return [r for r in pending if r.id not in done]

    async def _settle(self, rows: list[HostRow], state: HostState, message: str) -> None:
        ids = [r.id for r in rows]
        await self.write(lambda tx: store.settle_queued(tx, self.run_id, state, message, ids=ids))
        for row in rows:
            self.parked.pop(row.id, None)
            self.counts[state] += 1
            self._publish(
                events.HostStateChanged(
                    run_id=self.run_id, host=row.host_name, state=state.value, message=message
                )
            )

    async def cancel_queued(self) -> None:
        count = await self.write(
            lambda tx: store.settle_queued(tx, self.run_id, HostState.CANCELLED, "run cancelled")
        )
        self.counts[HostState.CANCELLED] += count
        self.parked.clear()

    # ---- one host ----------------------------------------------------------------------
    async def _host(self, row: HostRow) -> None:
        try:
            host = self.hosts[row.host_name]
            self.engine.hook("host-dispatched")
            work = HostWork(
                host=host,
                task=self.task,
                connections=self.engine.connections,
                timeout=self.timeout,
                retries=self.options.retries,
                check_mode=self.options.check,
                output_cap=self.output_cap,
                emit=lambda stream, text: self._publish(
                    events.HostOutput(
                        run_id=self.run_id,
                        host=row.host_name,
                        stream=stream,
                        text=safe_output(text, self.output_cap).text,
                    )
                ),
                secrets=self.engine.secrets,
            )
            try:
                if self.cancel_mode == "immediate":  # marked running, never dispatched
                    outcome = HostOutcome(HostState.CANCELLED, 0, error="cancelled before it ran")
                else:
                    outcome = await run_host(work)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                outcome = HostOutcome(HostState.CANCELLED, 0, error="cancelled while running")
            current = asyncio.current_task()
            assert current is not None
            self._recording.add(current)
            try:
                await self._record(row, outcome)
            except Exception:  # never an unretrieved task error; _finish settles the row
                log.exception("recording %s in run %s failed", row.host_name, self.run_id)
        finally:
            self._recording.discard(asyncio.current_task())  # type: ignore[arg-type]
            self._running.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            self._done.put_nowait(row)

    async def _save_facts(self, host_name: str, outcome: HostOutcome) -> None:
        """A task that gathered facts (``data["facts"]``) has them kept as the host's latest."""
        facts = outcome.data.get("facts")
        host = self.hosts.get(host_name)
        if not facts or host is None or host.id is None:
            return
        if outcome.state not in (HostState.OK, HostState.CHANGED) or self.options.check:
            return
        from mssp.store.facts import save_facts

        try:
            await save_facts(host.id, facts)
        except MsspError as exc:  # the run's result stands; the facts are a by-product
            log.warning("facts of %s not saved: %s", host_name, exc.message)
        except Exception as exc:  # a database error, or facts of an unexpected shape
            log.warning("facts of %s not saved: %s: %s", host_name, type(exc).__name__, exc)

    async def _record(self, row: HostRow, outcome: HostOutcome) -> None:
        self.engine.hook("before-final-commit")
        if outcome.offline and self.options.queue_offline and not self.cancel_mode:
            wall = datetime.fromtimestamp(self.engine.clock(), UTC)
            until = row.queued_until or wall + timedelta(seconds=self.options.queue_offline)
            if wall < until:
                await self.write(
                    lambda tx: store.park(
                        tx, self.run_id, row, outcome.attempts, neutralise(outcome.error), until
                    )
                )
                self.parked[row.id] = replace(row, queued_until=until, state="queued")
                self._publish(
                    events.HostQueuedOffline(
                        run_id=self.run_id,
                        host=row.host_name,
                        until=until.timestamp(),
                        reason=neutralise(outcome.error),
                    )
                )
                return
            outcome = replace(outcome, state=HostState.EXPIRED, error="offline queue TTL passed")
        final = store.Final(
            host_run_id=row.id,
            run_id=self.run_id,
            host_name=row.host_name,
            state=outcome.state.value,
            attempts=outcome.attempts,
            exit_status=outcome.exit_status,
            stdout=outcome.stdout,
            stderr=outcome.stderr,
            truncated=outcome.truncated,
            error=neutralise(outcome.error),  # error text can quote what a host sent
            result={**outcome.data, "duration": round(outcome.duration, 3)},
        )
        final = await self._commit_final(final, outcome)
        if final.state != outcome.state.value:
            outcome = replace(outcome, state=HostState(final.state), data={})
        self.engine.hook("after-final-commit")
        await self._save_facts(row.host_name, outcome)
        self.parked.pop(row.id, None)
        self.counts[outcome.state.value] += 1
        if outcome.state == HostState.EXPIRED:
            self._publish(events.HostExpired(run_id=self.run_id, host=row.host_name))
        self._publish(
            events.HostStateChanged(
                run_id=self.run_id,
                host=row.host_name,
                state=outcome.state.value,
                previous="running",
                message=final.error,
            )
        )
        for stream in ("stdout", "stderr"):
            text = getattr(outcome, stream)
            if text:
                self._publish(
                    events.HostOutput(
                        run_id=self.run_id, host=row.host_name, stream=stream, text=text
                    )
                )
        self._publish(events.RunProgressed(run_id=self.run_id, counts=self._counts()))

    async def _commit_final(self, final: store.Final, outcome: HostOutcome) -> store.Final:
        """Commit a host's final state; returns what was recorded.

        If the database refuses the results (a value it cannot store), the state is recorded
        without them and the error says so; if even that fails, the host is recorded as
        interrupted when the run finishes (see ``_finish``). Never raises a database error: the
        host task must end, and its run must not report a host that is still running.
        """
        try:
            await self.write(Merged(store.finish, final))
            return final
        except DatabaseError as exc:
            log.error("results of %s in run %s not recorded: %s", final.host_name, self.run_id, exc)
            note = f"the results could not be recorded ({exc.message}); output dropped"
            bare = replace(
                final,
                stdout="",
                stderr="",
                truncated=bool(outcome.stdout or outcome.stderr),
                error=neutralise(f"{final.error}; {note}" if final.error else note),
                result={"duration": final.result.get("duration", 0.0)},
            )
        try:
            await self.write(Merged(store.finish, bare))
            return bare
        except DatabaseError as exc:
            log.error("state of %s in run %s not recorded: %s", final.host_name, self.run_id, exc)
            return replace(bare, state=HostState.INTERRUPTED.value, error=UNRECORDED)


def _drain(queue: asyncio.Queue[HostRow | None]) -> list[HostRow | None]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items
