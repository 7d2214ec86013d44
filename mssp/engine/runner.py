"""One host's work within a run: connect (retrying transient errors), check → apply → verify,
and classify what happened into a host state. Knows nothing of the database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mssp.engine.retry import Backoff, should_retry
from mssp.engine.state import HostState
from mssp.errors import CommandError, CommandTimeout, ConnectError, MsspError
from mssp.inventory import HostRecord
from mssp.output import neutralise, neutralise_data, safe_output
from mssp.tasks.base import Task, TaskContext, TaskResult

log = logging.getLogger(__name__)


class ConnectionSource(Protocol):
    """What the engine needs of mssp.connections.ConnectionManager."""

    def connection(self, host: HostRecord) -> contextlib.AbstractAsyncContextManager[Any]: ...


class SecretSource(Protocol):
    """Hands a task the secrets it declared (``Task.secrets``) for one host."""

    async def secrets_for(self, host: HostRecord, names: tuple[str, ...]) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class HostOutcome:
    """What one attempt on one host came to."""

    state: HostState
    attempts: int
    exit_status: int | None = None
    stdout: str = ""
    """Neutralised and capped."""
    stderr: str = ""
    truncated: bool = False
    error: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    offline: bool = False
    """Unreachable for a transient reason (agent or host offline): may wait in the offline queue."""
    duration: float = 0.0


@dataclass
class HostWork:
    """Everything needed to work on one host."""

    host: HostRecord
    task: Task
    connections: ConnectionSource
    timeout: float
    retries: int
    check_mode: bool
    output_cap: int
    emit: Callable[[str, str], None]
    secrets: SecretSource | None = None
    backoff: Backoff = field(default_factory=Backoff)


_STATUS = {
    "ok": HostState.OK,
    "changed": HostState.CHANGED,
    "failed": HostState.FAILED,
    "skipped": HostState.SKIPPED,
}


def _result_outcome(result: TaskResult, attempts: int, cap: int, started: float) -> HostOutcome:
    """What a task returned, made safe: its message and data are host output too (a parsed
    os-release field, a package name), so every string in them is neutralised here, before the
    store, the facts, events or any view sees them."""
    out, err = safe_output(result.stdout, cap), safe_output(result.stderr, cap)
    message = neutralise(result.message)
    data = neutralise_data(dict(result.data))
    return HostOutcome(
        state=_STATUS[result.status],
        attempts=attempts,
        exit_status=result.exit_status,
        stdout=out.text,
        stderr=err.text,
        truncated=result.truncated or out.truncated or err.truncated,
        error=message if result.status == "failed" else "",
        data={"message": message, **data} if message else data,
        duration=time.monotonic() - started,
    )


def _command_outcome(
    state: HostState, exc: CommandError, attempts: int, cap: int, started: float
) -> HostOutcome:
    result = exc.result
    stdout = getattr(result, "stdout", "") or ""
    stderr = getattr(result, "stderr", "") or ""
    out, err = safe_output(stdout, cap), safe_output(stderr, cap)
    return HostOutcome(
        state=state,
        attempts=attempts,
        exit_status=getattr(result, "exit_status", None),
        stdout=out.text,
        stderr=err.text,
        truncated=bool(getattr(result, "truncated", False)) or out.truncated or err.truncated,
        error=exc.message,
        duration=time.monotonic() - started,
    )


async def run_host(work: HostWork) -> HostOutcome:
    """Do the task on one host and say what happened. Never raises except CancelledError.

    Only errors raised while connecting are retried: once a command may have been sent, running
    it again could do the work twice.
    """
    started = time.monotonic()
    deadline = started + work.timeout
    attempts = 0
    async with contextlib.AsyncExitStack() as stack:
        conn = None
        while conn is None:
            attempts += 1
            try:
                async with asyncio.timeout_at(_loop_deadline(deadline)):
                    conn = await stack.enter_async_context(work.connections.connection(work.host))
            except TimeoutError:
                return HostOutcome(
                    HostState.UNREACHABLE,
                    attempts,
                    error=f"no connection within the host timeout ({work.timeout:g}s)",
                    offline=True,
                    duration=time.monotonic() - started,
                )
            except ConnectError as exc:
                if should_retry(exc, attempts - 1, work.retries):
                    pause = work.backoff.delay(attempts - 1)
                    if time.monotonic() + pause < deadline:
                        await asyncio.sleep(pause)
                        continue
                return HostOutcome(
                    HostState.UNREACHABLE,
                    attempts,
                    error=f"{exc.title}: {exc.message}",
                    offline=exc.retryable,
                    duration=time.monotonic() - started,
                )
            except MsspError as exc:  # credentials missing, vault locked...
                return HostOutcome(
                    HostState.UNREACHABLE,
                    attempts,
                    error=f"{exc.title}: {exc.message}",
                    duration=time.monotonic() - started,
                )
        return await _run_task(work, conn, deadline, attempts, started)
    raise AssertionError("unreachable")  # pragma: no cover - the stack never swallows


def _loop_deadline(monotonic_deadline: float) -> float:
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())


async def _run_task(
    work: HostWork, conn: Any, deadline: float, attempts: int, started: float
) -> HostOutcome:
    cap = work.output_cap
    try:
        secrets: Mapping[str, Any] = {}
        if work.task.secrets:
            if work.secrets is None:
                raise MsspError(f"task {work.task.name!r} needs secrets and none are available")
            secrets = await work.secrets.secrets_for(work.host, work.task.secrets)
        ctx = TaskContext(
            host=work.host,
            conn=conn,
            secrets=secrets,
            emit=work.emit,
            check_mode=work.check_mode,
            deadline=deadline,
        )
        async with asyncio.timeout_at(_loop_deadline(deadline)):
            plan = await work.task.check(ctx)
            if work.check_mode:
                if not plan.predictable:
                    result = TaskResult.skipped("check mode: this task cannot predict its effect")
                elif plan.needed:
                    result = TaskResult.changed("would change: " + "; ".join(plan.changes))
                else:
                    result = TaskResult.ok("nothing to change")
            elif not plan.needed:
                # The plan may say why nothing is needed ("not present", "up to date").
                message = str(plan.data.get("message") or "nothing to change")
                result = TaskResult.ok(message)
            else:
                result = await work.task.apply(ctx, plan)
                result = await work.task.verify(ctx, plan, result)
        return _result_outcome(result, attempts, cap, started)
    except TimeoutError:
        return HostOutcome(
            HostState.TIMEOUT,
            attempts,
            error=f"did not finish within the host timeout ({work.timeout:g}s)",
            duration=time.monotonic() - started,
        )
    except CommandTimeout as exc:
        return _command_outcome(HostState.TIMEOUT, exc, attempts, cap, started)
    except CommandError as exc:
        return _command_outcome(HostState.FAILED, exc, attempts, cap, started)
    except ConnectError as exc:
        # The connection broke after work may have begun: unreachable, and never retried here.
        return HostOutcome(
            HostState.UNREACHABLE,
            attempts,
            error=f"connection lost during the task: {exc.message}",
            duration=time.monotonic() - started,
        )
    except MsspError as exc:
        return HostOutcome(
            HostState.FAILED,
            attempts,
            error=f"{exc.title}: {exc.message}",
            duration=time.monotonic() - started,
        )
    except Exception as exc:  # a bug in a task must fail one host, not the run
        log.exception("task %s crashed on %s", work.task.name, work.host.full_name)
        return HostOutcome(
            HostState.FAILED,
            attempts,
            error=f"internal error in task {work.task.name}: {type(exc).__name__}: {exc}",
            duration=time.monotonic() - started,
        )
