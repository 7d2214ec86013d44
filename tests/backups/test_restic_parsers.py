"""Parsers for restic's output, from output captured from restic 0.14 on this machine."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mssp.backups import restic as rx
from mssp.backups.evidence import Access
from mssp.backups.policy import Subset

SNAPSHOTS = (
    '[{"time":"2026-11-26T13:36:52.77826391Z","tree":"1ec7","paths":["/tmp/rx/data"],'
    '"hostname":"h1","username":"root","tags":["mssp","mssp-canary-sha256=' + "a" * 64 + '"],'
    '"id":"fd3d5c1b83d73317b4e4bba8e5849cab853a937d8af9768500fdce535014b2d1","short_id":"fd3d5c1b"},'
    '{"time":"2026-11-20T01:00:00+01:00","tree":"aa","paths":["/srv"],"hostname":"h1",'
    '"id":"0011223344556677","short_id":"00112233"}]'
)
CHECK_OK = """using temporary cache in /tmp/restic-check-cache-2604992026
create exclusive lock for repository
load indexes
check all packs
check snapshots, trees and blobs
[0:00] 100.00%  1 / 1 snapshots

read group #2 of 2 data packs (out of total 2 packs in 3 groups)
[0:00] 100.00%  2 / 2 packs

no errors were found
"""
CHECK_DAMAGED = """using temporary cache in /tmp/restic-check-cache-1140440877
create exclusive lock for repository
load indexes
check all packs
check snapshots, trees and blobs
[0:00] 100.00%  1 / 1 snapshots

read group #2 of 2 data packs (out of total 2 packs in 3 groups)
Pack ID does not match, want 4306f1c4, got 65d79775
[0:00] 100.00%  2 / 2 packs

Fatal: repository contains errors
"""
CHECK_TREE = """load indexes
check all packs
check snapshots, trees and blobs
error for tree 1ec7c3a6:
  tree 1ec7c3a6: file "a.bin" blob 0 size could not be found
Fatal: repository contains errors
"""
INDEX = (
    '{"packs":[{"id":"4306f1c4","blobs":[{"id":"10","type":"data","offset":0,"length":656108},'
    '{"id":"b0","type":"data","offset":656155,"length":625831}]},'
    '{"id":"497cdab4","blobs":[{"id":"97","type":"tree","offset":0,"length":790}]}]}\n'
    '{"packs":[{"id":"01ab","blobs":[{"id":"33","type":"data","offset":0,"length":100}]}]}\n'
)


def test_snapshots_parsed_oldest_first_in_utc() -> None:
    snaps = rx.parse_snapshots(SNAPSHOTS)
    assert [s.short_id for s in snaps] == ["00112233", "fd3d5c1b"]
    assert snaps[0].time == datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
    assert snaps[1].time == datetime(2026, 11, 26, 13, 36, 52, 778263, tzinfo=UTC)
    assert rx.canary_hash(snaps[1]) == "a" * 64 and rx.canary_hash(snaps[0]) == ""


@pytest.mark.parametrize("text", ["", "null", "[]"])
def test_no_snapshots(text: str) -> None:
    assert rx.parse_snapshots(text) == []


def test_garbage_is_an_error_not_an_empty_list() -> None:
    with pytest.raises(ValueError):
        rx.parse_snapshots('{"not": "a list"}')


def test_index_gives_pack_sizes() -> None:
    packs = rx.parse_indexes(INDEX)
    assert packs == {"4306f1c4": 656155 + 625831, "497cdab4": 790, "01ab": 100}


def test_check_ok_counts_what_was_read() -> None:
    packs = rx.parse_indexes(INDEX)
    ev = rx.parse_check(0, CHECK_OK, subset=Subset(2, 3), packs=packs, duration=1.5)
    assert ev.structural_ok and ev.read_ok and ev.packs_read == 2
    # 0x43, 0x49 and 0x01 are all 1 mod 3: every pack is in group 2
    assert ev.bytes_read == 656155 + 625831 + 790 + 100
    assert ev.subset == "2/3" and ev.errors == ()


def test_damage_found_while_reading_is_a_read_failure() -> None:
    ev = rx.parse_check(1, CHECK_DAMAGED, subset=Subset(2, 3), packs={}, duration=1.0)
    assert ev.structural_ok and not ev.read_ok
    assert ev.errors == ("Pack ID does not match, want 4306f1c4, got 65d79775",)


def test_tree_damage_is_structural() -> None:
    ev = rx.parse_check(1, CHECK_TREE, subset=Subset(1, 7), packs={}, duration=1.0)
    assert not ev.structural_ok and not ev.read_ok
    assert ev.errors[0].startswith("error for tree")


def test_empty_group_reads_nothing() -> None:
    out = CHECK_OK.replace("read group #2 of 2 data packs", "read group #1 of 0 data packs")
    ev = rx.parse_check(0, out, subset=Subset(1, 3), packs={"43": 10}, duration=0.1)
    assert ev.packs_read == 0 and ev.bytes_read == 0


def test_choose_subset_skips_empty_groups() -> None:
    packs = {"43aa": 10, "49bb": 20}  # both in group 2 of 3
    assert rx.choose_subset(Subset(1, 3), packs) == Subset(2, 3)
    assert rx.choose_subset(Subset(3, 3), packs) == Subset(2, 3)
    assert rx.choose_subset(Subset(3, 3), {}) == Subset(3, 3)


@pytest.mark.parametrize(
    ("status", "output", "access"),
    [
        (1, "Fatal: wrong password or no key found\n", Access.WRONG_PASSWORD),
        (
            1,
            "Fatal: unable to open config file: stat /x/config: no such file or directory\n"
            "Is there a repository at the following location?\n/x\n",
            Access.NO_REPOSITORY,
        ),
        (127, "sh: 1: restic: not found\n", Access.TOOL_MISSING),
        (
            1,
            "Fatal: unable to create lock in backend: repository is already locked by PID 1\n",
            Access.LOCKED,
        ),
        (
            1,
            "Fatal: unable to open repository at sftp:nas:/b: ssh command exited: exit status 255",
            Access.UNREACHABLE,
        ),
        (
            1,
            'Fatal: unable to open config file: client.Head: Head "http://b:***@127.0.0.1:1/r/'
            'config": dial tcp 127.0.0.1:1: connect: connection refused\n'
            "Is there a repository at the following location?\n",
            Access.UNREACHABLE,
        ),
        (1, "Fatal: something new\n", Access.ERROR),
    ],
)
def test_failures_classified(status: int, output: str, access: Access) -> None:
    assert rx.classify_failure(status, output)[0] is access


def test_repository_shown_without_credentials() -> None:
    assert (
        rx.display_repository("rest:https://u:secret@nas:8000/fs01") == "rest:https://nas:8000/fs01"
    )
    assert (
        rx.display_repository("s3:https://s3.example.com/bucket")
        == "s3:https://s3.example.com/bucket"
    )
    assert rx.display_repository("sftp:backup@nas:/srv/restic") == "sftp:backup@nas:/srv/restic"
    assert rx.display_repository("/srv/restic") == "/srv/restic"


def test_ls_keeps_regular_files_and_drops_unsafe_names() -> None:
    text = "\n".join(
        [
            '{"time":"2026-11-26T13:36:52Z","struct_type":"snapshot","id":"fd"}',
            '{"name":"d","type":"dir","path":"/d","struct_type":"node"}',
            '{"name":"a","type":"file","path":"/d/a","size":5,'
            '"mtime":"2026-11-26T13:00:00.5+00:00","struct_type":"node"}',
            '{"name":"x","type":"file","path":"/d/x\\ny","size":5,"struct_type":"node"}',
            '{"name":"cut","type":"fi',
        ]
    )
    nodes = rx.parse_ls(text)
    assert [n.path for n in nodes] == ["/d/a"]
    assert nodes[0].mtime == datetime(2026, 11, 26, 13, 0, 0, 500000, tzinfo=UTC)


def test_sample_rotates_and_respects_the_size_limit() -> None:
    files = [rx.Node(f"/f{i}", size, None) for i, size in enumerate([0, 10, 10**9, 20, 30])]
    picks = {rx.choose_sample(files, night=n, max_bytes=1000, exclude="/f4").path for n in range(6)}
    assert picks == {"/f1", "/f3"}
    assert rx.choose_sample(files[:1], night=0, max_bytes=1000, exclude="") is None


def test_commands_never_carry_the_password_or_repository() -> None:
    restic = rx.Restic()
    env = rx.environment("rest:https://u:pw@nas/x", "hunter2")
    lines = [
        restic.snapshots("fs01"),
        restic.check(Subset(1, 7)),
        restic.indexes(),
        restic.ls("abc"),
        restic.backup(["/srv"], host="fs01", tags=["mssp"]),
        restic.forget(host="fs01", keep=["--keep-daily", "7"], prune=True),
        restic.restore_script("abc", ["/srv/a b'c"], scratch_base="/var/tmp"),
    ]
    for line in lines:
        assert "hunter2" not in line and "nas/x" not in line
    assert env == {"RESTIC_REPOSITORY": "rest:https://u:pw@nas/x", "RESTIC_PASSWORD": "hunter2"}


def test_restore_output_parsed() -> None:
    out = "\n".join(
        [
            "restore-exit 0 100.25 101.75",
            "restored 5 " + "a" * 64,
            "live 5 1764162000 " + "a" * 64,
            "dump " + "a" * 64,
            "restored -",
            "live -",
            "dump -",
            "scratch-removed",
        ]
    )
    parsed = rx.parse_restore(out, 2)
    assert parsed.exit_status == 0 and parsed.duration == pytest.approx(1.5)
    assert parsed.scratch_removed
    first, second = parsed.files
    assert first.restored_sha256 == "a" * 64 and first.live_mtime == 1764162000
    assert second.restored_sha256 == "" and second.live_size is None


def test_backup_summary_parsed() -> None:
    out = (
        '{"message_type":"status","percent_done":1}\n'
        '{"message_type":"summary","files_new":2,"files_changed":0,"data_added":3001262,'
        '"total_bytes_processed":3000006,"total_duration":0.31,"snapshot_id":"fd3d5c1b"}\n'
    )
    summary = rx.parse_backup(out)
    assert summary.snapshot_id == "fd3d5c1b" and summary.files_new == 2
    with pytest.raises(ValueError):
        rx.parse_backup('{"message_type":"status"}')
