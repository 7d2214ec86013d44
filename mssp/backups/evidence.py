"""The evidence a backup verification gathers on a host: typed records, kept as JSON in history."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Access(StrEnum):
    """Whether the repository could be opened, and if not, why."""

    OK = "ok"
    TOOL_MISSING = "tool-missing"
    WRONG_PASSWORD = "wrong-password"  # noqa: S105 (a state name)
    NO_REPOSITORY = "no-repository"
    LOCKED = "locked"
    UNREACHABLE = "unreachable"
    ERROR = "error"


class RestoreProblem(StrEnum):
    """Why a file could not be restored: damaged data (the backup's fault) or anything else."""

    NONE = ""
    DAMAGED = "damaged"
    MISSING = "missing"
    """Not in the snapshot."""
    FAILED = "failed"
    """The restore itself could not run (scratch space, permissions...)."""


@dataclass(frozen=True)
class SnapshotInfo:
    """One restic snapshot as ``snapshots --json`` lists it."""

    id: str
    short_id: str
    time: datetime
    """Aware (UTC); restic writes nanoseconds and the host's offset."""
    hostname: str
    paths: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckEvidence:
    """``restic check --read-data-subset``: the structural part and the data actually read."""

    exit_status: int | None
    structural_ok: bool
    """Index, pack headers, snapshots and trees consistent."""
    read_ok: bool
    """Every pack of the subset read back and matched its hash."""
    subset: str
    """The group read, "n/N"."""
    packs_read: int
    bytes_read: int
    """Pack bytes in the group read, from the repository index."""
    errors: tuple[str, ...] = ()
    """restic's error lines (at most a few)."""
    duration: float = 0.0


@dataclass(frozen=True)
class RestoredFile:
    """One file restored to a scratch place and hashed."""

    path: str
    role: str
    """"sample" or "canary"."""
    size: int | None = None
    sha256: str = ""
    """Of the restored copy; empty when the restore failed."""
    expected_sha256: str = ""
    expected_from: str = ""
    """Where the expected hash came from, in words."""
    problem: RestoreProblem = RestoreProblem.NONE
    error: str = ""
    duration: float = 0.0

    @property
    def matches(self) -> bool:
        return bool(self.sha256) and self.sha256 == self.expected_sha256


@dataclass(frozen=True)
class Evidence:
    """Everything one verification of one host's backup found."""

    repository: str
    """As shown to people: any user:password in a URL is removed."""
    snapshot_host: str
    """The restic host name snapshots were filtered by ("" = all)."""
    access: Access = Access.OK
    access_message: str = ""
    snapshot_count: int = 0
    latest: SnapshotInfo | None = None
    check: CheckEvidence | None = None
    restored: tuple[RestoredFile, ...] = ()
    canary_path: str = ""
    """The canary the policy expects in every snapshot ("" = none configured)."""
    scratch_removed: bool = True
    durations: Mapping[str, float] = field(default_factory=dict)
    """Seconds per step (snapshots, index, check, restore...)."""

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.latest is not None:
            data["latest"]["time"] = self.latest.time.isoformat()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Evidence:
        values = dict(data)
        latest = values.get("latest")
        if latest:
            values["latest"] = SnapshotInfo(
                **{
                    **latest,
                    "time": datetime.fromisoformat(latest["time"]),
                    "paths": tuple(latest.get("paths", ())),
                    "tags": tuple(latest.get("tags", ())),
                }
            )
        check = values.get("check")
        if check:
            values["check"] = CheckEvidence(**{**check, "errors": tuple(check.get("errors", ()))})
        values["restored"] = tuple(
            RestoredFile(**{**item, "problem": RestoreProblem(item.get("problem", ""))})
            for item in values.get("restored", ())
        )
        values["access"] = Access(values.get("access", "ok"))
        values["durations"] = dict(values.get("durations", {}))
        return cls(**values)
