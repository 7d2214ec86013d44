"""Cron expressions and ``next_run()``: pure functions, in a schedule's own time zone, DST-aware.

Five fields (minute hour day-of-month month day-of-week) with lists, ranges, steps and names, plus
the usual macros (@hourly, @daily, @weekly, @monthly, @yearly). As in Vixie cron, when both
day-of-month and day-of-week are restricted, a day matches if either does.

Daylight saving time, in the schedule's zone:
- a wall-clock time that does not exist (the spring-forward gap) runs at the first instant after
  the gap, once;
- a wall-clock time that happens twice (fall back) runs once, at its first occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from mssp.errors import UsageError

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
        start=1,
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
# (name, low, high, names)
_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_SEARCH_LIMIT = timedelta(days=366 * 5)


@dataclass(frozen=True)
class CronExpr:
    """A parsed cron expression."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    """0 = Sunday (7 is folded into 0)."""
    days_restricted: bool
    weekdays_restricted: bool

    def matches_date(self, year: int, month: int, day: int) -> bool:
        if month not in self.months:
            return False
        weekday = (datetime(year, month, day).weekday() + 1) % 7
        day_ok = day in self.days
        weekday_ok = weekday in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok


def _value(token: str, names: dict[str, int], field: str) -> int:
    token = token.lower()
    if token in names:
        return names[token]
    if not token.isdigit():
        raise UsageError(f"cron {field}: {token!r} is not a number or name")
    return int(token)


def _parse_field(text: str, field: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise UsageError(f"cron {field}: empty list item")
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise UsageError(f"cron {field}: bad step {step_text!r}")
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = _value(a, names, field), _value(b, names, field)
        else:
            start = _value(part, names, field)
            end = high if step > 1 else start
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise UsageError(f"cron {field}: {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def parse(text: str) -> CronExpr:
    """Parse a cron expression; UsageError with the offending field when it is invalid."""
    source = text.strip()
    expanded = _MACROS.get(source.lower(), source)
    parts = expanded.split()
    if len(parts) != 5:
        raise UsageError(f"cron expression {text!r} needs 5 fields, has {len(parts)}")
    sets = [
        _parse_field(part, name, low, high, names)
        for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True)
    ]
    weekdays = {0 if d == 7 else d for d in sets[4]}
    return CronExpr(
        text=source,
        minutes=frozenset(sets[0]),
        hours=frozenset(sets[1]),
        days=frozenset(sets[2]),
        months=frozenset(sets[3]),
        weekdays=frozenset(weekdays),
        days_restricted=parts[2] != "*",
        weekdays_restricted=parts[4] != "*",
    )


def _resolve_local(naive: datetime, tz: ZoneInfo) -> datetime | None:
    """The first real instant for a wall-clock time, or None if the time does not exist."""
    first = naive.replace(tzinfo=tz, fold=0)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive:
        return None  # in a gap
    return first


def next_run(expr: CronExpr | str, after: datetime, tz: str | ZoneInfo = "UTC") -> datetime:
    """The first instant strictly after ``after`` (aware) at which ``expr`` fires, in UTC."""
    if isinstance(expr, str):
        expr = parse(expr)
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    if after.tzinfo is None:
        raise ValueError("next_run needs an aware datetime")
    local_after = after.astimezone(zone)
    # Walk wall-clock minutes in the zone; compare real instants to handle folds and gaps.
    naive = local_after.replace(tzinfo=None, second=0, microsecond=0) + timedelta(minutes=1)
    # A gap may have swallowed a matching time in the hour before `after`: handled because a
    # skipped time resolves to the instant after the gap, which we compare against `after`.
    naive -= timedelta(hours=3)
    limit = naive + _SEARCH_LIMIT
    while naive < limit:
        if not expr.matches_date(naive.year, naive.month, naive.day):
            naive = (naive + timedelta(days=1)).replace(hour=0, minute=0)
            continue
        if naive.hour not in expr.hours:
            naive = (naive + timedelta(hours=1)).replace(minute=0)
            continue
        if naive.minute not in expr.minutes:
            naive += timedelta(minutes=1)
            continue
        instant = _resolve_local(naive, zone)
        if instant is None:
            # Skipped by spring-forward: run at the first instant after the gap.
            probe = naive
            while _resolve_local(probe, zone) is None:
                probe += timedelta(minutes=1)
            instant = _resolve_local(probe, zone)
            assert instant is not None
        if instant.astimezone(UTC) > after.astimezone(UTC):
            return instant.astimezone(UTC)
        naive += timedelta(minutes=1)
    raise UsageError(f"cron expression {expr.text!r} never fires")


@dataclass(frozen=True)
class Due:
    """What a schedule should do now."""

    run: bool
    """Whether to start a run now."""
    scheduled_for: datetime | None
    """The (latest) planned time this run stands for."""
    late: bool
    """True when that time is more than the grace period ago (the daemon was asleep)."""
    missed: int
    """How many planned times passed without a run (they are folded into this one run)."""


def due(
    expr: CronExpr | str,
    tz: str | ZoneInfo,
    *,
    last_planned: datetime,
    now: datetime,
    grace: timedelta = timedelta(minutes=5),
) -> Due:
    """Missed-run policy: however many planned times passed since ``last_planned``, run once.

    ``last_planned`` is the planned time of the last run started (or the schedule's creation).
    """
    first = next_run(expr, last_planned, tz)
    if first > now:
        return Due(run=False, scheduled_for=None, late=False, missed=0)
    latest = first
    count = 1
    while True:
        following = next_run(expr, latest, tz)
        if following > now:
            break
        latest = following
        count += 1
        if count > 100_000:
            break
    return Due(run=True, scheduled_for=latest, late=now - latest > grace, missed=count - 1)
