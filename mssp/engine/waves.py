"""Wave planning (--batch N|N%, --canary) and the --max-fail rule (pure functions)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from mssp.errors import UsageError

T = TypeVar("T")

_BATCH = re.compile(r"^\s*(\d+)\s*(%?)\s*$")


@dataclass(frozen=True)
class BatchSize:
    """A wave size: a host count, or a percentage of the whole selection."""

    value: int
    percent: bool = False

    def hosts(self, total: int) -> int:
        """Hosts per wave for a selection of ``total`` hosts (at least one)."""
        if self.percent:
            # Ansible's serial: a percentage of the selection, rounded down, at least one
            return max(1, math.floor(total * self.value / 100))
        return max(1, self.value)

    def __str__(self) -> str:
        return f"{self.value}%" if self.percent else str(self.value)


def parse_batch(text: str) -> BatchSize:
    """Parse "10" or "25%". UsageError on anything else."""
    match = _BATCH.match(text or "")
    if not match:
        raise UsageError(f"--batch must be a host count or a percentage (10, 25%), not {text!r}")
    value, percent = int(match.group(1)), bool(match.group(2))
    if value <= 0 or (percent and value > 100):
        raise UsageError(f"--batch out of range: {text!r}")
    return BatchSize(value, percent)


def parse_percent(text: str | float, option: str = "--max-fail") -> float:
    """Parse "10%", "10" or 10 as a percentage in 0..100."""
    raw = str(text).strip().removesuffix("%").strip()
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{option} must be a percentage such as 10%, not {text!r}") from None
    if not 0 <= value <= 100 or math.isnan(value):
        raise UsageError(f"{option} must be between 0% and 100%, not {text!r}")
    return value


def plan_waves(
    hosts: Sequence[T],
    *,
    batch: BatchSize | None = None,
    canary: bool = False,
    client_of: Callable[[T], str] = lambda h: h.client,  # type: ignore[attr-defined]
) -> list[list[T]]:
    """Split hosts into waves, keeping the input order within each wave.

    With ``canary`` the first wave holds the first host of each client (so a bad change shows on
    one machine per client before it reaches the rest). The remaining hosts are cut into waves of
    ``batch`` hosts (a percentage is of the whole selection), or form one wave without a batch.
    """
    remaining = list(hosts)
    waves: list[list[T]] = []
    if canary and remaining:
        seen: set[str] = set()
        first: list[T] = []
        rest: list[T] = []
        for host in remaining:
            client = client_of(host)
            if client in seen:
                rest.append(host)
            else:
                seen.add(client)
                first.append(host)
        waves.append(first)
        remaining = rest
    if not remaining:
        return waves
    size = batch.hosts(len(hosts)) if batch else len(remaining)
    for start in range(0, len(remaining), size):
        waves.append(remaining[start : start + size])
    return waves


def max_fail_exceeded(failed: int, finished: int, percent: float | None) -> bool:
    """Whether failures so far exceed ``percent`` of the hosts finished so far.

    Checked between waves. "Exceeds" is strict, as in Ansible: 1 failure of 10 with 10% goes on;
    0% halts at the first failure.
    """
    if percent is None or finished <= 0:
        return False
    return failed * 100 > percent * finished
