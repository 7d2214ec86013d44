"""BackupPolicy: how old a snapshot may be, how the read subset rotates, what retention keeps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from mssp.errors import ParameterError

DEFAULT_MAX_AGE = timedelta(hours=26)
DEFAULT_SUBSET_NIGHTS = 7


@dataclass(frozen=True)
class Subset:
    """One group of restic's ``--read-data-subset=n/N``: packs whose first ID byte mod N is n-1."""

    n: int
    total: int

    def __str__(self) -> str:
        return f"{self.n}/{self.total}"

    def holds(self, pack_id: str) -> bool:
        """Whether restic puts this pack (hex id) into this group (cmd_check.go's rule)."""
        return int(pack_id[:2], 16) % self.total == self.n - 1


@dataclass(frozen=True)
class BackupPolicy:
    """What a VERIFIED backup must satisfy, and what retention keeps."""

    max_age: timedelta = DEFAULT_MAX_AGE
    """The newest snapshot must be younger than this (a nightly backup plus slack: 26 h)."""
    subset_nights: int = DEFAULT_SUBSET_NIGHTS
    """The read subset rotates over this many nights, so every pack is read once per cycle."""
    sample_max_bytes: int = 64 * 1024 * 1024
    """The sampled restored file is chosen among files no larger than this."""
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_monthly: int = 12

    def __post_init__(self) -> None:
        if self.max_age <= timedelta(0):
            raise ParameterError("the maximum snapshot age must be positive")
        if not 1 <= self.subset_nights <= 255:
            # restic groups packs by their first ID byte: more than 256 groups are meaningless
            raise ParameterError("the read subset must rotate over 1 to 255 nights")
        if self.sample_max_bytes <= 0:
            raise ParameterError("the sample size limit must be positive")
        if min(self.keep_daily, self.keep_weekly, self.keep_monthly) < 0:
            raise ParameterError("retention counts cannot be negative")

    def subset_for(self, night: date) -> Subset:
        """Tonight's group: consecutive nights take consecutive groups, covering all in N nights."""
        return Subset(night.toordinal() % self.subset_nights + 1, self.subset_nights)

    def retention_args(self) -> list[str]:
        """restic forget's --keep-* options (empty when retention is switched off entirely)."""
        args: list[str] = []
        for flag, count in (
            ("--keep-daily", self.keep_daily),
            ("--keep-weekly", self.keep_weekly),
            ("--keep-monthly", self.keep_monthly),
        ):
            if count:
                args += [flag, str(count)]
        return args
