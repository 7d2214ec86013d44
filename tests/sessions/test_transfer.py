"""`cp` and `collect` against real in-process SSH servers: verified both ways, tampering caught,
nothing half-written left behind, every transfer audited (on SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from mssp import audit
from mssp.config import Settings
from mssp.errors import TransferError, UsageError
from mssp.sessions.hosts import resolve_host
from mssp.sessions.transfer import (
    Endpoint,
    collect,
    collect_exit_code,
    copy,
    parse_endpoint,
)
from tests.sessions.helpers import manager_for, seed
from tests.sshserver import ssh_test_server


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("acme/hq/srv1:/etc/hosts", Endpoint("acme/hq/srv1", "/etc/hosts")),
        ("srv1:notes.txt", Endpoint("srv1", "notes.txt")),
        ("/tmp/a:b", Endpoint(None, "/tmp/a:b")),
        ("./a:b", Endpoint(None, "./a:b")),
        ("report.txt", Endpoint(None, "report.txt")),
        ("C:\\temp\\x.txt", Endpoint(None, "C:\\temp\\x.txt")),
    ],
)
def test_host_path_syntax(arg: str, expected: Endpoint) -> None:
    assert parse_endpoint(arg) == expected


def test_host_without_path_is_refused() -> None:
    with pytest.raises(UsageError):
        parse_endpoint("srv1:")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_cp_both_ways_verified_and_audited(db: Settings, tmp_path: Path) -> None:
    payload = os.urandom(300_000)
    local = tmp_path / "upload.bin"
    local.write_bytes(payload)
    remote_dir = tmp_path / "remote"
    remote_dir.mkdir()
    async with ssh_test_server() as srv:
        vault, _ = await seed(db, [srv])
        async with manager_for(db, vault) as manager:
            # a remote folder as destination keeps the file name, as cp does
            up = await copy(
                manager, resolve_host, Endpoint(None, str(local)), Endpoint("srv1", f"{remote_dir}")
            )
            assert up.remote_path == f"{remote_dir}/upload.bin"
            assert (remote_dir / "upload.bin").read_bytes() == payload
            assert up.sha256 == _sha(local) and up.size == len(payload)
            back = tmp_path / "back"
            back.mkdir()
            down = await copy(
                manager,
                resolve_host,
                Endpoint("acme/hq/srv1", f"{remote_dir}/upload.bin"),
                Endpoint(None, str(back)),
            )
            assert (back / "upload.bin").read_bytes() == payload
            assert down.sha256 == up.sha256
    entries = await audit.entries(action="transfer")
    assert [(e.action, e.result) for e in entries] == [
        ("transfer.put", "intent"),
        ("transfer.put", "ok"),
        ("transfer.get", "intent"),
        ("transfer.get", "ok"),
    ]
    assert entries[1].as_dict()["detail"]["sha256"] == up.sha256


async def test_tampered_upload_is_detected_and_replaces_nothing(
    db: Settings, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    local = work / "config.txt"
    local.write_bytes(b"new configuration\n" * 1000)
    target = work / "target.txt"
    target.write_bytes(b"old configuration\n")
    async with ssh_test_server() as srv:
        srv.tamper_sftp_writes = True
        vault, _ = await seed(db, [srv])
        async with manager_for(db, vault) as manager:
            with pytest.raises(TransferError, match="differs"):
                await copy(
                    manager, resolve_host, Endpoint(None, str(local)), Endpoint("srv1", str(target))
                )
    assert target.read_bytes() == b"old configuration\n"
    assert sorted(p.name for p in work.iterdir()) == ["config.txt", "target.txt"]
    last = (await audit.entries(action="transfer.put"))[-1]
    assert last.result == "failed" and "differs" in last.as_dict()["detail"]["error"]


async def test_tampered_download_is_detected_and_writes_nothing(
    db: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "syslog"
    source.write_bytes(b"log line\n" * 5000)
    dest = tmp_path / "dest"
    dest.mkdir()
    async with ssh_test_server() as srv:
        srv.tamper_sftp_reads = True
        vault, _ = await seed(db, [srv])
        async with manager_for(db, vault) as manager:
            with pytest.raises(TransferError, match="differs"):
                await copy(
                    manager, resolve_host, Endpoint("srv1", str(source)), Endpoint(None, str(dest))
                )
    assert list(dest.iterdir()) == []


async def test_collect_one_file_from_many_hosts_into_a_folder_per_host(
    db: Settings, tmp_path: Path
) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"the same path on every host\n" * 100)
    dest = tmp_path / "collected"
    seen: list[tuple[str, int, int]] = []
    async with (
        ssh_test_server() as a,
        ssh_test_server() as b,
        ssh_test_server() as c,
    ):
        c.tamper_sftp_reads = True  # this host's copy arrives corrupted
        vault, hosts = await seed(db, [a, b, c])
        await b.stop()  # and this one is down
        async with manager_for(db, vault) as manager:
            items = await collect(
                manager,
                hosts,
                str(log),
                dest,
                parallel=2,
                progress=lambda item, done, total: seen.append((item.host, done, total)),
            )
    by_host = {i.host: i for i in items}
    assert [i.host for i in items] == ["acme/hq/srv1", "acme/hq/srv2", "acme/hq/srv3"]
    ok = by_host["acme/hq/srv1"]
    assert ok.state == "ok" and Path(ok.local_path) == dest / "acme/hq/srv1/app.log"
    assert Path(ok.local_path).read_bytes() == log.read_bytes() and ok.sha256 == _sha(log)
    assert by_host["acme/hq/srv2"].state == "unreachable"
    assert by_host["acme/hq/srv3"].state == "failed"
    assert "differs" in by_host["acme/hq/srv3"].error
    assert not (dest / "acme/hq/srv3").exists()  # nothing half-written for the tampered host
    assert sorted(d for _, d, _ in seen) == [1, 2, 3] and {t for *_, t in seen} == {3}
    assert collect_exit_code(items) == 4
    audited = await audit.entries(action="transfer.collect")
    assert sorted((e.target, e.result) for e in audited) == [
        ("acme/hq/srv1", "ok"),
        ("acme/hq/srv2", "unreachable"),
        ("acme/hq/srv3", "failed"),
    ]


async def test_ambiguous_bare_host_name_is_refused(db: Settings) -> None:
    from mssp.store.inventory import create_client, create_host, create_site

    for client in ("acme", "globex"):
        await create_client(client, client)
        await create_site(client, "hq", "HQ")
        await create_host(client, "hq", "fs01", address="192.0.2.1")
    with pytest.raises(UsageError, match="ambiguous"):
        await resolve_host("fs01")
    assert (await resolve_host("globex/hq/fs01")).client == "globex"
