"""Host state transitions and exit codes (pure)."""

from __future__ import annotations

import pytest

from mssp.engine.state import (
    FINAL_HOST_STATES,
    HostState,
    can_transition,
    check_transition,
    count_states,
    exit_code_for,
)
from mssp.errors import RunError


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("queued", "running"),
        ("queued", "cancelled"),
        ("queued", "expired"),
        ("running", "ok"),
        ("running", "timeout"),
        ("running", "interrupted"),
        ("running", "queued"),  # parked in the offline queue
        ("interrupted", "queued"),  # only by an explicit resume --rerun-interrupted
    ],
)
def test_allowed(old: str, new: str) -> None:
    assert can_transition(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("queued", "ok"),  # never finished without having run
        ("queued", "interrupted"),
        ("interrupted", "ok"),  # never ok or failed by guess
        ("interrupted", "failed"),
        ("ok", "running"),
        ("failed", "queued"),
        ("expired", "running"),
    ],
)
def test_refused(old: str, new: str) -> None:
    assert not can_transition(old, new)
    with pytest.raises(RunError):
        check_transition(old, new)


def test_final_states_have_no_way_out() -> None:
    for state in FINAL_HOST_STATES:
        assert not any(can_transition(state, other) for other in HostState)


def test_count_states_lists_every_state() -> None:
    counts = count_states(["ok", "ok", "failed"])
    assert counts["ok"] == 2 and counts["failed"] == 1 and counts["queued"] == 0
    assert set(counts) == {s.value for s in HostState}


@pytest.mark.parametrize(
    ("run_state", "counts", "code"),
    [
        ("finished", {"ok": 3, "changed": 1}, 0),
        ("finished", {"ok": 1, "skipped": 2}, 0),
        ("finished", {"ok": 1, "failed": 1, "unreachable": 1}, 4),
        ("finished", {"ok": 1, "unreachable": 1}, 5),
        ("finished", {"ok": 1, "timeout": 1}, 5),
        ("finished", {"expired": 1}, 5),
        ("halted", {"failed": 2, "skipped": 3}, 6),
        ("cancelled", {"ok": 1, "cancelled": 2}, 6),
        ("interrupted", {"interrupted": 1}, 6),
        ("finished", {"ok": 1, "interrupted": 1}, 6),
    ],
)
def test_exit_codes(run_state: str, counts: dict[str, int], code: int) -> None:
    assert exit_code_for(run_state, counts) == code
