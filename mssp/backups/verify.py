"""The verdict on one host's backup: a pure function of the evidence, the policy and the time.

Severity decides when several things are wrong: a backup we cannot see into is UNVERIFIABLE
before anything else; one that never ran is NOT_RUN; damaged data (CORRUPT) outranks old data
(STALE). VERIFIED needs every condition of DESIGN.md §5; there is no partial green.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from mssp.backups.evidence import Access, Evidence, RestoreProblem
from mssp.backups.policy import BackupPolicy

#: a snapshot this far in the future means the host's clock is wrong: its age means nothing
CLOCK_SKEW = timedelta(hours=1)


class BackupState(StrEnum):
    VERIFIED = "VERIFIED"
    STALE = "STALE"
    CORRUPT = "CORRUPT"
    UNVERIFIABLE = "UNVERIFIABLE"
    NOT_RUN = "NOT_RUN"


@dataclass(frozen=True)
class Verdict:
    state: BackupState
    reason: str
    """One or two sentences a client could read."""

    @property
    def verified(self) -> bool:
        return self.state is BackupState.VERIFIED


_ACCESS_REASONS = {
    Access.TOOL_MISSING: "restic is not installed on the host",
    Access.WRONG_PASSWORD: "the repository password is wrong (restic found no key for it)",
    Access.NO_REPOSITORY: "there is no restic repository at {repo}",
    Access.LOCKED: "the repository is locked by another restic process",
    Access.UNREACHABLE: "the repository at {repo} cannot be reached",
    Access.ERROR: "the repository could not be opened",
}


def describe_age(age: timedelta) -> str:
    """'3 d 4 h', '5 h 12 min', '40 min'."""
    minutes = int(age.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins} min"
    return f"{mins} min"


def describe_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def decide(evidence: Evidence, policy: BackupPolicy, now: datetime) -> Verdict:
    """VERIFIED only when the newest snapshot is young enough, the structural check passed, a
    non-empty subset of data was read without error, and every restored file hashes as expected."""
    unverifiable = BackupState.UNVERIFIABLE
    if evidence.access is not Access.OK:
        reason = _ACCESS_REASONS[evidence.access].format(repo=evidence.repository)
        if evidence.access_message:
            reason += f" ({evidence.access_message})"
        return Verdict(unverifiable, reason)
    latest = evidence.latest
    if evidence.snapshot_count == 0 or latest is None:
        who = f" of {evidence.snapshot_host}" if evidence.snapshot_host else ""
        return Verdict(
            BackupState.NOT_RUN, f"the repository holds no snapshot{who}: no backup has run"
        )
    check = evidence.check
    if check is None:
        return Verdict(unverifiable, "the repository check did not run")
    if not check.structural_ok:
        return Verdict(
            BackupState.CORRUPT, "the repository's structural check failed" + _first(check.errors)
        )
    if not check.read_ok:
        return Verdict(
            BackupState.CORRUPT,
            f"reading data subset {check.subset} found damaged data" + _first(check.errors),
        )
    if check.bytes_read <= 0 or check.packs_read <= 0:
        return Verdict(
            unverifiable,
            f"the read subset {check.subset} read no data (zero bytes read is not a pass)",
        )
    damaged = [f for f in evidence.restored if f.problem is RestoreProblem.DAMAGED]
    if damaged:
        return Verdict(
            BackupState.CORRUPT,
            f"restoring {damaged[0].path} failed on damaged data" + _first((damaged[0].error,)),
        )
    mismatched = [f for f in evidence.restored if f.sha256 and not f.matches]
    if mismatched:
        f = mismatched[0]
        return Verdict(
            BackupState.CORRUPT,
            f"the restored {f.role} file {f.path} hashes {f.sha256[:12]}…, "
            f"expected {f.expected_sha256[:12] or '(none)'}… ({f.expected_from})",
        )
    canaries = [f for f in evidence.restored if f.role == "canary"]
    if evidence.canary_path and not canaries:
        return Verdict(unverifiable, f"the canary {evidence.canary_path} was not restored")
    for f in evidence.restored:
        if f.problem is RestoreProblem.MISSING and f.role == "canary":
            return Verdict(
                BackupState.CORRUPT,
                f"the canary file {f.path} is missing from snapshot {latest.short_id}",
            )
        if f.problem is not RestoreProblem.NONE:
            return Verdict(
                unverifiable, f"could not restore {f.path}" + _first((f.error or f.problem,))
            )
    samples = [f for f in evidence.restored if f.role == "sample" and f.matches]
    if not samples:
        return Verdict(unverifiable, f"snapshot {latest.short_id} holds no file to restore")
    age = now - latest.time
    if age < -CLOCK_SKEW:
        return Verdict(
            unverifiable,
            f"snapshot {latest.short_id} is dated {describe_age(-age)} in the future: "
            "the host's clock is wrong",
        )
    if age > policy.max_age:
        return Verdict(
            BackupState.STALE,
            f"the newest snapshot ({latest.short_id}, {latest.time:%Y-%m-%d %H:%M} UTC) is "
            f"{describe_age(age)} old; the limit is {describe_age(policy.max_age)}",
        )
    restored = ", ".join(f"{f.role} {f.path}" for f in evidence.restored)
    return Verdict(
        BackupState.VERIFIED,
        f"snapshot {latest.short_id} is {describe_age(max(age, timedelta(0)))} old; check passed; "
        f"subset {check.subset} read ({check.packs_read} packs, "
        f"{describe_bytes(check.bytes_read)}); restored {restored}: hashes match",
    )


def _first(errors: tuple[str, ...] | list[str]) -> str:
    for error in errors:
        if error:
            text = " ".join(str(error).split())
            return f": {text[:200]}"
    return ""
