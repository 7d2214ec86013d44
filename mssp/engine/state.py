"""Host and run states, the transitions between them, and what a run's counts mean (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from mssp.errors import RunError


class HostState(StrEnum):
    """One host's state within a run. Stored as text in HostRun.state."""

    QUEUED = "queued"
    RUNNING = "running"
    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    INTERRUPTED = "interrupted"


class RunState(StrEnum):
    """A run's state, stored as text in Run.state."""

    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    """Only hosts parked in the offline queue remain; any engine may adopt the run."""
    CANCELLING = "cancelling"
    """Cancellation was asked (possibly by another process); the owner is winding down."""
    FINISHED = "finished"
    HALTED = "halted"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


#: states a host never leaves on its own (interrupted is left only by an explicit resume)
FINAL_HOST_STATES = frozenset(
    {
        HostState.OK,
        HostState.CHANGED,
        HostState.FAILED,
        HostState.UNREACHABLE,
        HostState.TIMEOUT,
        HostState.SKIPPED,
        HostState.CANCELLED,
        HostState.EXPIRED,
    }
)
#: what counts against --max-fail
FAILURE_STATES = frozenset({HostState.FAILED, HostState.UNREACHABLE, HostState.TIMEOUT})
FINAL_RUN_STATES = frozenset(
    {RunState.FINISHED, RunState.HALTED, RunState.CANCELLED, RunState.INTERRUPTED}
)

_TRANSITIONS: Mapping[HostState, frozenset[HostState]] = {
    HostState.QUEUED: frozenset(
        {HostState.RUNNING, HostState.SKIPPED, HostState.CANCELLED, HostState.EXPIRED}
    ),
    # running -> queued: parked in the offline queue after an unreachable attempt
    HostState.RUNNING: frozenset(FINAL_HOST_STATES | {HostState.INTERRUPTED, HostState.QUEUED}),
    # only `runs resume --rerun-interrupted` re-queues an interrupted host, on the user's word
    HostState.INTERRUPTED: frozenset({HostState.QUEUED}),
}


def can_transition(old: HostState | str, new: HostState | str) -> bool:
    """Whether a host may go from ``old`` to ``new``."""
    return HostState(new) in _TRANSITIONS.get(HostState(old), frozenset())


def check_transition(old: HostState | str, new: HostState | str) -> None:
    """Raise RunError for a transition the engine must never make."""
    if not can_transition(old, new):
        raise RunError(f"invalid host state transition {old} -> {new}")


def count_states(states: Iterable[str]) -> dict[str, int]:
    """Counts by state, with every state present (zero when absent) in a stable order."""
    counts = {s.value: 0 for s in HostState}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return counts


#: exit codes, as documented in mssp.cli.EXIT_CODES_HELP
EXIT_OK = 0
EXIT_FAILED = 4
EXIT_UNREACHABLE = 5
EXIT_INTERRUPTED = 6


def exit_code_for(run_state: str, counts: Mapping[str, int]) -> int:
    """The CLI exit code for a run that ended in ``run_state`` with these host counts."""
    if run_state in (RunState.INTERRUPTED, RunState.CANCELLED, RunState.HALTED):
        return EXIT_INTERRUPTED
    if counts.get(HostState.INTERRUPTED, 0) or counts.get(HostState.CANCELLED, 0):
        return EXIT_INTERRUPTED
    if counts.get(HostState.FAILED, 0):
        return EXIT_FAILED
    if any(counts.get(s, 0) for s in (HostState.UNREACHABLE, HostState.TIMEOUT, HostState.EXPIRED)):
        return EXIT_UNREACHABLE
    return EXIT_OK
