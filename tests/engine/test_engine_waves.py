"""Wave planning and the --max-fail rule, from tables (pure)."""

from __future__ import annotations

import pytest

from mssp.engine.waves import BatchSize, max_fail_exceeded, parse_batch, parse_percent, plan_waves
from mssp.errors import UsageError
from mssp.inventory import HostRecord


def hosts(spec: str) -> list[HostRecord]:
    """'a1 a2 b1' -> hosts named a1, a2, b1 of clients a, a, b."""
    return [HostRecord(client=n[0], site="s", name=n, address="h") for n in spec.split()]


def names(waves: list[list[HostRecord]]) -> list[str]:
    return [" ".join(h.name for h in wave) for wave in waves]


@pytest.mark.parametrize(
    ("spec", "batch", "canary", "expected"),
    [
        ("a1 a2 a3", None, False, ["a1 a2 a3"]),
        ("a1 a2 a3 a4 a5", "2", False, ["a1 a2", "a3 a4", "a5"]),
        ("a1 a2 a3 a4", "50%", False, ["a1 a2", "a3 a4"]),
        ("a1 a2 a3", "10%", False, ["a1", "a2", "a3"]),  # at least one host per wave
        ("a1 a2 b1 b2 c1", None, True, ["a1 b1 c1", "a2 b2"]),
        ("a1 a2 a3 b1 b2", "2", True, ["a1 b1", "a2 a3", "b2"]),
        ("a1 b1", None, True, ["a1 b1"]),  # nothing left after the canary
        (
            "a1 a2 a3 a4 a5 a6 a7 a8 a9 a10",
            "25%",
            False,
            ["a1 a2", "a3 a4", "a5 a6", "a7 a8", "a9 a10"],
        ),
        ("", "2", True, []),
    ],
)
def test_plan_waves(spec: str, batch: str | None, canary: bool, expected: list[str]) -> None:
    size = parse_batch(batch) if batch else None
    assert names(plan_waves(hosts(spec) if spec else [], batch=size, canary=canary)) == expected


def test_waves_keep_every_host_once_in_order() -> None:
    selection = hosts(" ".join(f"{c}{i}" for i in range(7) for c in "abc"))
    waves = plan_waves(selection, batch=BatchSize(4), canary=True)
    flat = [h for wave in waves for h in wave]
    assert sorted(h.name for h in flat) == sorted(h.name for h in selection)
    assert len(flat) == len(selection)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10", BatchSize(10)), ("25%", BatchSize(25, True)), (" 5 % ", BatchSize(5, True))],
)
def test_parse_batch(text: str, expected: BatchSize) -> None:
    assert parse_batch(text) == expected


@pytest.mark.parametrize("text", ["", "0", "-1", "101%", "ten", "5.5", "%"])
def test_parse_batch_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_batch(text)


@pytest.mark.parametrize(
    ("text", "expected"), [("10%", 10.0), ("0", 0.0), (12.5, 12.5), ("100%", 100.0)]
)
def test_parse_percent(text: str | float, expected: float) -> None:
    assert parse_percent(text) == expected


@pytest.mark.parametrize("text", ["-1%", "101", "lots", "nan"])
def test_parse_percent_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_percent(text)


@pytest.mark.parametrize(
    ("failed", "finished", "percent", "halt"),
    [
        (0, 10, 0.0, False),
        (1, 10, 0.0, True),  # 0% halts at the first failure
        (1, 10, 10.0, False),  # exactly 10% does not exceed 10%
        (2, 10, 10.0, True),
        (1, 3, 50.0, False),
        (2, 3, 50.0, True),
        (5, 5, None, False),  # no --max-fail: never halts
        (0, 0, 10.0, False),
    ],
)
def test_max_fail(failed: int, finished: int, percent: float | None, halt: bool) -> None:
    assert max_fail_exceeded(failed, finished, percent) is halt
