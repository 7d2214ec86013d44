"""The audit trail of runs: an intent entry per client before a run starts, is retried or
resumed (AuditError refuses it, nothing written), the outcome with that client's counts when the
run ends, and cancels.

Entries are per client so that `mssp audit export --client X` gives each client the runs that
touched its hosts. Details hold the task, its parameters (never secrets: a task takes secrets
from the vault by name, and the run row stores the same parameters), the target and host names.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mssp import audit
from mssp.errors import AuditError
from mssp.inventory import HostRecord
from mssp.models.runs import HostRun

log = logging.getLogger(__name__)

MAX_PARAMS_JSON = 2000
"""Parameters larger than this (a script body) are audited by their names and SHA-256."""
MAX_HOST_NAMES = 200
"""Host names listed per client entry; beyond that only the count."""


@dataclass(frozen=True)
class RunAudit:
    """The open intent entries of a run being driven: what its outcome entries complete."""

    action: str
    """run.start, run.retry or run.resume."""
    target: str
    seqs: Mapping[str, int] = field(default_factory=dict)
    """Client → seq of its intent entry."""


def _params(params: Mapping[str, Any]) -> dict[str, Any]:
    text = json.dumps(params, sort_keys=True, default=str)
    if len(text) <= MAX_PARAMS_JSON:
        return dict(params)
    return {"names": sorted(params), "sha256": hashlib.sha256(text.encode()).hexdigest()}


def _by_client(names: Iterable[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for name in names:
        out[name.split("/", 1)[0]].append(name)
    return dict(sorted(out.items()))


async def run_intent(
    action: str,
    *,
    task: str,
    target: str,
    params: Mapping[str, Any],
    hosts: Sequence[HostRecord],
    check: bool,
    run_id: int | None = None,
    retry_of: int | None = None,
) -> dict[str, int]:
    """Write one intent entry per client whose hosts the run touches; client → seq.

    Raises AuditError when any cannot be written: the caller must not start the run.
    """
    from mssp.db import write_transaction

    seqs: dict[str, int] = {}
    try:
        # one commit for every client's entry: all or none (no run with half its intents), and
        # one fsync instead of one per client before the first host starts
        async with write_transaction():
            for client, names in _by_client(h.full_name for h in hosts).items():
                detail: dict[str, Any] = {
                    "task": task,
                    "params": _params(params),
                    "check": check,
                    "host_count": len(names),
                    "hosts": names[:MAX_HOST_NAMES],
                }
                if run_id is not None:
                    detail["run"] = run_id
                if retry_of is not None:
                    detail["retry_of"] = retry_of
                seqs[client] = await audit.intent(
                    action, client=client, target=target, detail=detail
                )
    except AuditError:
        raise
    except Exception as exc:  # the commit itself failed: fail closed, as one entry would
        raise AuditError(f"cannot write the audit log: {type(exc).__name__}") from None
    return seqs


async def run_outcome(
    trail: RunAudit, *, run_id: int | None, result: str, message: str = ""
) -> None:
    """Write each client's outcome entry with its host counts. Never raises: the run has ended
    whatever the log says; a failure is logged (the intent entries stay open in the chain)."""
    action, seqs, target = trail.action, trail.seqs, trail.target
    if not seqs:
        return
    try:
        rows = (
            await HostRun.filter(run_id=run_id).values("client_slug", "state")
            if run_id is not None
            else []
        )
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        for row in rows:
            counts[row["client_slug"]][row["state"]] += 1
        from mssp.db import write_transaction

        async with write_transaction():  # one commit for every client's entry
            for client, seq in seqs.items():
                detail = {"run": run_id, "counts": dict(sorted(counts[client].items()))}
                if message:
                    detail["message"] = message
                await audit.outcome(
                    seq, action, client=client, target=target, result=result, detail=detail
                )
    except AuditError as exc:
        log.error("run %s: outcome not audited: %s", run_id, exc.message)
    except Exception as exc:  # the database went away as the run ended
        log.error("run %s: outcome not audited: %s: %s", run_id, type(exc).__name__, exc)


async def run_clients(run_id: int) -> list[str]:
    rows = await HostRun.filter(run_id=run_id).distinct().values_list("client_slug", flat=True)
    return sorted(set(rows))


async def record_cancel(run_id: int, *, immediate: bool) -> None:
    """A cancel is recorded per client before it is carried out (AuditError refuses it)."""
    for client in await run_clients(run_id) or [""]:
        await audit.record(
            "run.cancel",
            client=client,
            target=f"run {run_id}",
            detail={"run": run_id, "immediate": immediate},
        )
