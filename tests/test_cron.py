"""next_run() and the missed-run policy, from tables (including DST changes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mssp.cron import due, next_run, parse
from mssp.errors import UsageError

BERLIN = ZoneInfo("Europe/Berlin")
NY = ZoneInfo("America/New_York")


def local(tz: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=tz, fold=fold)  # type: ignore[misc]


CASES = [
    # expr, tz, after (local), expected (local)
    ("30 2 * * *", BERLIN, local(BERLIN, 2026, 11, 26, 1, 0), local(BERLIN, 2026, 11, 26, 2, 30)),
    ("30 2 * * *", BERLIN, local(BERLIN, 2026, 11, 26, 2, 30), local(BERLIN, 2026, 11, 27, 2, 30)),
    ("*/15 * * * *", UTC, local(UTC, 2026, 1, 1, 10, 7), local(UTC, 2026, 1, 1, 10, 15)),
    ("0 9 * * mon-fri", UTC, local(UTC, 2026, 11, 27, 9, 0), local(UTC, 2026, 11, 30, 9, 0)),
    ("0 0 1 * *", UTC, local(UTC, 2026, 1, 31, 12, 0), local(UTC, 2026, 2, 1, 0, 0)),
    ("0 0 29 2 *", UTC, local(UTC, 2026, 3, 1, 0, 0), local(UTC, 2028, 2, 29, 0, 0)),
    ("@daily", UTC, local(UTC, 2026, 12, 31, 23, 59), local(UTC, 2027, 1, 1, 0, 0)),
    ("0 12 * * 7", UTC, local(UTC, 2026, 11, 26, 0, 0), local(UTC, 2026, 11, 29, 12, 0)),
    # Vixie rule: day-of-month OR day-of-week when both are restricted
    ("0 0 13 * fri", UTC, local(UTC, 2026, 11, 1, 0, 0), local(UTC, 2026, 11, 6, 0, 0)),
    ("0 6 * jan,jul *", UTC, local(UTC, 2026, 2, 1, 0, 0), local(UTC, 2026, 7, 1, 6, 0)),
    # Spring forward, Berlin 2026-03-29 02:00 -> 03:00: 02:30 does not exist, runs at 03:00 once
    ("30 2 * * *", BERLIN, local(BERLIN, 2026, 3, 29, 1, 0), local(BERLIN, 2026, 3, 29, 3, 0)),
    ("30 2 * * *", BERLIN, local(BERLIN, 2026, 3, 29, 3, 0), local(BERLIN, 2026, 3, 30, 2, 30)),
    # Fall back, Berlin 2026-10-25 03:00 -> 02:00: 02:30 happens twice, runs at the first only
    ("30 2 * * *", BERLIN, local(BERLIN, 2026, 10, 25, 1, 0), local(BERLIN, 2026, 10, 25, 2, 30)),
    (
        "30 2 * * *",
        BERLIN,
        local(BERLIN, 2026, 10, 25, 2, 30),
        local(BERLIN, 2026, 10, 26, 2, 30),
    ),
    # New York spring forward 2026-03-08 02:00 -> 03:00
    ("15 2 * * *", NY, local(NY, 2026, 3, 7, 23, 0), local(NY, 2026, 3, 8, 3, 0)),
    ("0 3 * * *", NY, local(NY, 2026, 3, 8, 0, 0), local(NY, 2026, 3, 8, 3, 0)),
]


@pytest.mark.parametrize(("expr", "tz", "after", "expected"), CASES)
def test_next_run(expr: str, tz: ZoneInfo, after: datetime, expected: datetime) -> None:
    assert next_run(expr, after, tz) == expected.astimezone(UTC)


def test_fall_back_first_occurrence_is_the_earlier_instant() -> None:
    first = next_run("30 2 * * *", local(BERLIN, 2026, 10, 25, 1, 0), BERLIN)
    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "* * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "*/0 * * * *",
        "5-1 * * * *",
        "a * * * *",
        "* * * * funday",
        "1,,2 * * * *",
        "@sometimes",
    ],
)
def test_bad_expressions_rejected(bad: str) -> None:
    with pytest.raises(UsageError):
        parse(bad)


@given(st.text(max_size=30))
def test_parse_fuzz_only_usage_error(text: str) -> None:
    try:
        parse(text)
    except UsageError:
        pass


def test_missed_runs_fold_into_one_late_run() -> None:
    """Laptop asleep over three nights at 02:30: run once, marked late, not three times."""
    last = local(BERLIN, 2026, 11, 20, 2, 30).astimezone(UTC)
    now = local(BERLIN, 2026, 11, 23, 9, 0).astimezone(UTC)
    d = due("30 2 * * *", BERLIN, last_planned=last, now=now)
    assert d.run and d.late and d.missed == 2
    assert d.scheduled_for == local(BERLIN, 2026, 11, 23, 2, 30).astimezone(UTC)


def test_on_time_run_is_not_late_and_not_repeated() -> None:
    last = local(BERLIN, 2026, 11, 22, 2, 30).astimezone(UTC)
    planned = local(BERLIN, 2026, 11, 23, 2, 30).astimezone(UTC)
    d = due("30 2 * * *", BERLIN, last_planned=last, now=planned + timedelta(seconds=20))
    assert d.run and not d.late and d.missed == 0
    again = due("30 2 * * *", BERLIN, last_planned=planned, now=planned + timedelta(minutes=1))
    assert not again.run
