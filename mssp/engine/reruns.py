"""Runs started again: ``resume`` takes over a run whose process died (or that waits in the
offline queue) and runs its queued hosts; ``retry`` starts a new run of a finished run's task,
parameters and options over the hosts that ended in a given state. The Engine delegates here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mssp.engine import auditing, recovery, store
from mssp.engine.auditing import RunAudit
from mssp.engine.options import RunOptions
from mssp.engine.state import HostState, RunState
from mssp.errors import NotFoundError, RunError, UsageError
from mssp.models.runs import HostRun, Run
from mssp.tasks.base import get_task

if TYPE_CHECKING:
    from mssp.engine.core import Engine

RETRY_STATES = {
    "failed": (HostState.FAILED, HostState.TIMEOUT),
    "unreachable": (HostState.UNREACHABLE, HostState.EXPIRED),
    "interrupted": (HostState.INTERRUPTED,),
    "cancelled": (HostState.CANCELLED,),
}


async def resume(engine: Engine, run_id: int, *, rerun_interrupted: bool = False) -> int:
    """Take over a run whose process died (or that waits): run its queued hosts.

    Interrupted hosts are not run again unless ``rerun_interrupted``: their command may have
    run already.
    """
    await engine.start()
    run = await Run.get_or_none(id=run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id}")
    if engine.drives(run_id):
        raise RunError(f"run {run_id} is already running here")
    if run.owner and run.owner != engine.owner and recovery.owner_alive(run.owner):
        raise RunError(f"run {run_id} is owned by a live process ({run.owner})")
    resumable = (RunState.INTERRUPTED, RunState.WAITING, RunState.RUNNING, RunState.QUEUED)
    if run.state not in resumable:
        raise RunError(f"run {run_id} is {run.state}: nothing to resume")
    task = get_task(run.task)(run.params or {})
    options = RunOptions.from_json(run.options or {})
    names = await HostRun.filter(run_id=run_id).values_list("host_name", flat=True)
    pool = {h.full_name: h for h in await engine.hosts.load_hosts()}
    hosts = {n: pool[n] for n in names if n in pool}
    trail = RunAudit(
        "run.resume",
        run.target,
        await auditing.run_intent(
            "run.resume",
            task=run.task,
            target=run.target,
            params=run.params or {},
            hosts=list(hosts.values()),
            check=options.check,
            run_id=run_id,
        ),
    )

    async def claim(tx: Any) -> bool:
        ok = await store.claim_run(
            tx,
            run_id,
            owner=engine.owner,
            expected_owner=run.owner,
            states=[s.value for s in resumable],
            new=RunState.RUNNING,
        )
        if ok and rerun_interrupted:
            await tx.execute(
                "UPDATE host_run SET state = ?, error = '' WHERE run_id = ? AND state = ?",
                [HostState.QUEUED.value, run_id, HostState.INTERRUPTED.value],
            )
        return ok

    if not await engine.writer.write(claim):
        await auditing.run_outcome(
            trail, run_id=run_id, result="refused", message="taken over by another process"
        )
        raise RunError(f"run {run_id} was taken over by another process")
    engine.launch(run_id, task, options, hosts, trail)
    return run_id


async def retry(engine: Engine, run_id: int, *, which: Sequence[str]) -> int:
    """A new run of the same task, parameters and options over the hosts of ``run_id`` that
    ended in ``which`` ("failed": failed or timeout; "unreachable": unreachable or expired;
    "interrupted"; "cancelled"), linked to it by retry_of."""
    run = await Run.get_or_none(id=run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id}")
    unknown = set(which) - set(RETRY_STATES)
    if unknown or not which:
        raise UsageError("retry needs --failed, --unreachable, --interrupted or --cancelled")
    states = [s.value for w in which for s in RETRY_STATES[w]]
    names = (
        await HostRun.filter(run_id=run_id, state__in=states)
        .order_by("id")
        .values_list("host_name", flat=True)
    )
    if not names:
        raise RunError(f"run {run_id} has no host in {', '.join(which)} state")
    pool = {h.full_name: h for h in await engine.hosts.load_hosts()}
    missing = [n for n in names if n not in pool]
    if missing:
        raise RunError(f"host {missing[0]} is no longer in the inventory")
    task = get_task(run.task)(run.params or {})
    options = RunOptions.from_json(run.options or {})
    return await engine.create(
        task, run.target, task.params, options, [pool[n] for n in names], run_id
    )
