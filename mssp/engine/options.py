"""What a run was asked to do (RunOptions) and what it did (RunSummary, HostSummary)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mssp.engine.waves import BatchSize, parse_batch, parse_percent
from mssp.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, option: str = "duration") -> float:
    """Parse "30", "90s", "15m", "12h", "7d", "2w" into seconds."""
    match = _DURATION.match(str(text))
    if not match:
        raise UsageError(f"{option} must be a duration such as 90s, 15m, 12h or 7d, not {text!r}")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise UsageError(f"{option} must be positive, not {text!r}")
    return seconds


@dataclass(frozen=True)
class RunOptions:
    """How a run goes. Stored with the run (Run.options) so retries and resumes keep it."""

    forks: int | None = None
    """Hosts worked on at once in this run; None means Settings.forks."""
    per_client: int | None = None
    """Hosts of one client worked on at once; None means Settings.per_client_limit."""
    batch: str | None = None
    """Wave size: "10" hosts or "25%" of the selection; None means one wave."""
    canary: bool = False
    """First wave: one host per client."""
    max_fail: float | None = None
    """Percentage of failed/unreachable/timed-out hosts (so far) that halts remaining waves."""
    timeout: float | None = None
    """Seconds one host's work may take; None means Settings.command_timeout."""
    check: bool = False
    """Plan only: call the task's check, never its apply."""
    queue_offline: float | None = None
    """Seconds an unreachable host waits in the offline queue; None: unreachable at once."""
    retries: int = 1
    """Connection attempts after the first, for retryable connection errors only (the
    connection manager also retries each connect; this is the engine's retry of the host)."""
    output_cap: int | None = None
    """Characters kept per output stream per host; None means Settings.output_cap."""
    limit: str | None = None
    """A further selection expression the target is narrowed by (Ansible's -l)."""

    def __post_init__(self) -> None:
        for name in ("forks", "per_client", "output_cap"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise UsageError(f"{name} must be a positive integer")
        if self.batch is not None:
            parse_batch(self.batch)
        if self.max_fail is not None:
            parse_percent(self.max_fail)
        for name in ("timeout", "queue_offline"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UsageError(f"{name} must be positive")
        if self.retries < 0:
            raise UsageError("retries must be zero or more")

    @property
    def batch_size(self) -> BatchSize | None:
        return parse_batch(self.batch) if self.batch else None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class HostSummary:
    """One host's part of a finished (or waiting) run."""

    host: str
    """Full name client/site/host."""
    state: str
    wave: int = 0
    attempts: int = 0
    exit_status: int | None = None
    error: str = ""
    stdout: str = ""
    """Neutralised and capped."""
    stderr: str = ""
    truncated: bool = False
    duration: float | None = None
    queued_until: str | None = None
    """ISO time an offline-queued host expires."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunSummary:
    """A run as recorded: its state, counts by host state, and every host."""

    run_id: int
    task: str
    target: str
    state: str
    counts: Mapping[str, int]
    hosts: tuple[HostSummary, ...] = ()
    message: str = ""
    check_mode: bool = False
    retry_of: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None

    @property
    def exit_code(self) -> int:
        from mssp.engine.state import exit_code_for

        return exit_code_for(self.state, self.counts)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["counts"] = dict(self.counts)
        data["exit_code"] = self.exit_code
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSummary:
        """The summary ``to_json`` wrote (``exit_code`` is derived, not read). ValueError if the
        document is not one."""
        known = {f.name for f in dataclasses.fields(cls)}
        host_fields = {f.name for f in dataclasses.fields(HostSummary)}
        try:
            values = {k: v for k, v in data.items() if k in known}
            values["hosts"] = tuple(
                HostSummary(**{k: v for k, v in h.items() if k in host_fields})
                for h in data.get("hosts", ())
            )
            return cls(**values)
        except (TypeError, AttributeError) as exc:
            raise ValueError(f"not a run summary: {exc}") from None
