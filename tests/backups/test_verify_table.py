"""The verdict from a table of evidence: every state, and that nothing partial is ever green."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from mssp.backups.evidence import (
    Access,
    CheckEvidence,
    Evidence,
    RestoredFile,
    RestoreProblem,
    SnapshotInfo,
)
from mssp.backups.policy import BackupPolicy, Subset
from mssp.backups.verify import BackupState, decide

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
H = "a" * 64
OTHER = "b" * 64
POLICY = BackupPolicy()


def snap(age: timedelta) -> SnapshotInfo:
    return SnapshotInfo("c0ffee" + "0" * 58, "c0ffee00", NOW - age, "fs01", ("/srv",), ("mssp",))


CHECK_OK = CheckEvidence(0, True, True, "3/7", packs_read=4, bytes_read=17_000_000)
SAMPLE = RestoredFile("/srv/a.pdf", "sample", 10, H, H, "the live file")
CANARY = RestoredFile("/srv/.canary", "canary", 64, H, H, "snapshot tag")
GOOD = Evidence(
    repository="sftp:nas:/b",
    snapshot_host="fs01",
    snapshot_count=12,
    latest=snap(timedelta(hours=4)),
    check=CHECK_OK,
    restored=(SAMPLE, CANARY),
    canary_path="/srv/.canary",
)


def with_(**changes) -> Evidence:
    return dataclasses.replace(GOOD, **changes)


CASES = [
    ("all good", GOOD, BackupState.VERIFIED, "hashes match"),
    ("25 h old", with_(latest=snap(timedelta(hours=25))), BackupState.VERIFIED, ""),
    ("27 h old", with_(latest=snap(timedelta(hours=27))), BackupState.STALE, "1 d 3 h old"),
    ("30 days old", with_(latest=snap(timedelta(days=30))), BackupState.STALE, "limit is 1 d 2 h"),
    (
        "from the future",
        with_(latest=snap(timedelta(hours=-3))),
        BackupState.UNVERIFIABLE,
        "clock is wrong",
    ),
    ("no snapshot", with_(snapshot_count=0, latest=None), BackupState.NOT_RUN, "no backup has run"),
    (
        "wrong password",
        with_(access=Access.WRONG_PASSWORD),
        BackupState.UNVERIFIABLE,
        "password is wrong",
    ),
    (
        "no repository",
        with_(access=Access.NO_REPOSITORY),
        BackupState.UNVERIFIABLE,
        "no restic repository at sftp:nas:/b",
    ),
    ("restic missing", with_(access=Access.TOOL_MISSING), BackupState.UNVERIFIABLE, "installed"),
    ("locked", with_(access=Access.LOCKED), BackupState.UNVERIFIABLE, "locked"),
    (
        "unreachable",
        with_(access=Access.UNREACHABLE),
        BackupState.UNVERIFIABLE,
        "cannot be reached",
    ),
    ("check missing", with_(check=None), BackupState.UNVERIFIABLE, "did not run"),
    (
        "structure broken",
        with_(check=dataclasses.replace(CHECK_OK, structural_ok=False, errors=("tree x: bad",))),
        BackupState.CORRUPT,
        "structural check failed: tree x: bad",
    ),
    (
        "read found damage",
        with_(
            check=dataclasses.replace(CHECK_OK, read_ok=False, errors=("Pack ID does not match",))
        ),
        BackupState.CORRUPT,
        "reading data subset 3/7 found damaged data",
    ),
    (
        "zero bytes read",
        with_(check=dataclasses.replace(CHECK_OK, bytes_read=0)),
        BackupState.UNVERIFIABLE,
        "zero bytes read is not a pass",
    ),
    (
        "zero packs read",
        with_(check=dataclasses.replace(CHECK_OK, packs_read=0)),
        BackupState.UNVERIFIABLE,
        "read no data",
    ),
    (
        "sample hash differs",
        with_(restored=(dataclasses.replace(SAMPLE, sha256=OTHER), CANARY)),
        BackupState.CORRUPT,
        "sample file /srv/a.pdf hashes bbbbbbbbbbbb",
    ),
    (
        "canary hash differs",
        with_(restored=(SAMPLE, dataclasses.replace(CANARY, expected_sha256=OTHER))),
        BackupState.CORRUPT,
        "canary file",
    ),
    (
        "canary missing from snapshot",
        with_(
            restored=(
                SAMPLE,
                RestoredFile("/srv/.canary", "canary", problem=RestoreProblem.MISSING),
            )
        ),
        BackupState.CORRUPT,
        "missing from snapshot c0ffee00",
    ),
    (
        "canary not restored at all",
        with_(restored=(SAMPLE,)),
        BackupState.UNVERIFIABLE,
        "canary /srv/.canary was not restored",
    ),
    (
        "restore hit damaged data",
        with_(
            restored=(
                RestoredFile("/srv/a.pdf", "sample", problem=RestoreProblem.DAMAGED, error="bad"),
                CANARY,
            )
        ),
        BackupState.CORRUPT,
        "failed on damaged data",
    ),
    (
        "restore could not run",
        with_(
            restored=(
                RestoredFile("/srv/a.pdf", "sample", problem=RestoreProblem.FAILED, error="disk"),
                CANARY,
            )
        ),
        BackupState.UNVERIFIABLE,
        "could not restore /srv/a.pdf: disk",
    ),
    (
        "nothing to sample",
        with_(restored=(CANARY,)),
        BackupState.UNVERIFIABLE,
        "holds no file to restore",
    ),
    (
        "corrupt beats stale",
        with_(
            latest=snap(timedelta(days=9)),
            check=dataclasses.replace(CHECK_OK, read_ok=False),
        ),
        BackupState.CORRUPT,
        "damaged",
    ),
    (
        "unverifiable beats everything",
        with_(access=Access.WRONG_PASSWORD, check=dataclasses.replace(CHECK_OK, read_ok=False)),
        BackupState.UNVERIFIABLE,
        "",
    ),
]


@pytest.mark.parametrize(("name", "evidence", "state", "words"), CASES, ids=[c[0] for c in CASES])
def test_verdict_table(name: str, evidence: Evidence, state: BackupState, words: str) -> None:
    verdict = decide(evidence, POLICY, NOW)
    assert verdict.state is state, verdict.reason
    assert words in verdict.reason


def test_only_complete_evidence_is_green() -> None:
    """Removing any one proof from good evidence makes it anything but VERIFIED."""
    weakened = [
        with_(check=dataclasses.replace(CHECK_OK, structural_ok=False)),
        with_(check=dataclasses.replace(CHECK_OK, read_ok=False)),
        with_(check=dataclasses.replace(CHECK_OK, bytes_read=0)),
        with_(restored=()),
        with_(restored=(dataclasses.replace(SAMPLE, sha256=""), CANARY)),
        with_(restored=(dataclasses.replace(SAMPLE, expected_sha256=""), CANARY)),
        with_(latest=snap(POLICY.max_age + timedelta(minutes=1))),
    ]
    for evidence in weakened:
        assert decide(evidence, POLICY, NOW).state is not BackupState.VERIFIED


def test_policy_limit_is_configurable() -> None:
    short = BackupPolicy(max_age=timedelta(hours=2))
    assert decide(with_(latest=snap(timedelta(hours=3))), short, NOW).state is BackupState.STALE


def test_evidence_round_trips_through_json() -> None:
    import json

    again = Evidence.from_json(json.loads(json.dumps(GOOD.to_json())))
    assert again == GOOD


def test_subset_rotation_covers_every_group_over_n_nights() -> None:
    policy = BackupPolicy(subset_nights=7)
    first = datetime(2026, 11, 1).date()
    groups = {policy.subset_for(first + timedelta(days=i)) for i in range(7)}
    assert groups == {Subset(n, 7) for n in range(1, 8)}
    assert policy.subset_for(first) == policy.subset_for(first + timedelta(days=7))


def test_subset_membership_follows_restics_rule() -> None:
    # cmd_check.go: a pack is in group n of N when its first ID byte mod N == n - 1
    assert Subset(2, 3).holds("43" + "0" * 62)  # 0x43 = 67; 67 % 3 == 1
    assert not Subset(1, 3).holds("43" + "0" * 62)
    assert Subset(1, 1).holds("ff" + "0" * 62)


@pytest.mark.parametrize("nights", [0, 256])
def test_policy_refuses_bad_rotation(nights: int) -> None:
    from mssp.errors import ParameterError

    with pytest.raises(ParameterError):
        BackupPolicy(subset_nights=nights)
