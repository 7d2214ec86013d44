"""Read-only views of runs for the CLI and the dashboard: summaries and listings."""

from __future__ import annotations

from datetime import datetime

from mssp.engine.options import HostSummary, RunSummary
from mssp.engine.state import count_states
from mssp.errors import NotFoundError
from mssp.models.runs import HostRun, Run


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _duration(result: object) -> float | None:
    if isinstance(result, str):  # raw JSON text on some backends
        import json

        try:
            result = json.loads(result)
        except ValueError:
            return None
    return result.get("duration") if isinstance(result, dict) else None


async def load_summary(run_id: int, *, with_hosts: bool = True) -> RunSummary:
    """The run as recorded now. NotFoundError when there is no such run."""
    run = await Run.get_or_none(id=run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id}")
    rows = (
        await HostRun.filter(run_id=run_id)
        .order_by("id")
        .values(
            "host_name",
            "state",
            "wave",
            "attempts",
            "exit_status",
            "error",
            "stdout",
            "stderr",
            "truncated",
            "result",
            "queued_until",
        )
    )
    hosts = tuple(
        HostSummary(
            host=r["host_name"],
            state=r["state"],
            wave=r["wave"],
            attempts=r["attempts"],
            exit_status=r["exit_status"],
            error=r["error"],
            stdout=r["stdout"],
            stderr=r["stderr"],
            truncated=bool(r["truncated"]),
            duration=_duration(r["result"]),
            queued_until=_iso(r["queued_until"]),
        )
        for r in rows
    )
    return RunSummary(
        run_id=run.id,
        task=run.task,
        target=run.target,
        state=run.state,
        counts={k: v for k, v in count_states(h.state for h in hosts).items() if v},
        hosts=hosts if with_hosts else (),
        message=run.message,
        check_mode=run.check_mode,
        retry_of=run.retry_of_id,  # type: ignore[attr-defined]
        params=run.params or {},
        options=run.options or {},
        created_at=_iso(run.created_at),
        started_at=_iso(run.started_at),
        finished_at=_iso(run.finished_at),
    )


async def list_runs(limit: int = 20) -> list[RunSummary]:
    """The newest runs first, with counts but without per-host detail."""
    runs = await Run.all().order_by("-id").limit(limit)
    ids = [r.id for r in runs]
    states: dict[int, list[str]] = {i: [] for i in ids}
    for row in await HostRun.filter(run_id__in=ids).values("run_id", "state"):
        states[row["run_id"]].append(row["state"])
    return [
        RunSummary(
            run_id=run.id,
            task=run.task,
            target=run.target,
            state=run.state,
            counts={k: v for k, v in count_states(states[run.id]).items() if v},
            message=run.message,
            check_mode=run.check_mode,
            retry_of=run.retry_of_id,  # type: ignore[attr-defined]
            params=run.params or {},
            options=run.options or {},
            created_at=_iso(run.created_at),
            started_at=_iso(run.started_at),
            finished_at=_iso(run.finished_at),
        )
        for run in runs
    ]
