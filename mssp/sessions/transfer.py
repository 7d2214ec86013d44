"""`mssp cp` and `mssp collect`: verified file copies between this machine and hosts.

The connectors verify every transfer (SSH: the far side's ``sha256sum`` against ours; WinRM:
``Get-FileHash``), write to a temporary name and rename only on a match, so a tampered or truncated
copy never replaces a file. Here: the HOST:PATH syntax, folders as destinations, one file from many
hosts into a folder per host (in parallel, bounded, with progress), and the audit entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import ntpath
import posixpath
import shlex
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mssp import audit
from mssp.connections import ConnectionManager
from mssp.errors import ConnectError, MsspError, TransferError, UsageError
from mssp.inventory import HostRecord


@dataclass(frozen=True)
class Endpoint:
    """One side of a copy: a local path (host None) or HOST:PATH."""

    host: str | None
    path: str


@dataclass(frozen=True)
class CopyResult:
    """A verified copy."""

    direction: str
    """"upload" or "download"."""
    host: str
    local_path: str
    remote_path: str
    size: int
    sha256: str
    """Equal on both ends (checked by the connector)."""
    duration: float


@dataclass(frozen=True)
class CollectItem:
    """One host's part of a collect."""

    host: str
    state: str
    """ok, failed (transfer or hash mismatch) or unreachable."""
    local_path: str
    size: int = 0
    sha256: str = ""
    error: str = ""


def parse_endpoint(arg: str) -> Endpoint:
    """HOST:PATH names a host (client/site/host or a bare host name); anything else is local.

    A local path containing a colon can be written ./a:b or as an absolute path.
    """
    if not arg:
        raise UsageError("empty path")
    head, sep, tail = arg.partition(":")
    if not sep or not head or head.startswith((".", "/", "~")) or len(head) == 1:
        # no colon, a relative/absolute local path, or a drive letter (C:\...) of a local path
        return Endpoint(None, arg)
    if not tail:
        raise UsageError(f"{arg!r}: give a path after the colon (HOST:PATH)")
    return Endpoint(head, tail)


def _remote_basename(path: str) -> str:
    name = ntpath.basename(path) if "\\" in path else posixpath.basename(path)
    if not name or name in (".", ".."):
        raise UsageError(f"{path!r} names a folder, not a file")
    return name


async def _remote_target(conn: object, host: HostRecord, remote: str, local: Path) -> str:
    """A remote folder as destination gets the local file's name, as cp and scp do."""
    if remote.endswith(("/", "\\")):
        return remote + local.name
    if host.transport == "ssh":
        probe = await conn.run(f"test -d {shlex.quote(remote)}", timeout=30)  # type: ignore[attr-defined]
        if probe.exit_status == 0:
            return posixpath.join(remote, local.name)
    return remote


def _local_side(source: Endpoint, dest: Endpoint, upload: bool) -> Path:
    """The local file: it must exist to be sent; a folder as destination gets the remote name."""
    if upload:
        local = Path(source.path).expanduser()
        if not local.is_file():
            raise TransferError(f"{local}: no such file (folders are not copied)")
        return local
    local = Path(dest.path).expanduser()
    if local.is_dir():
        local = local / _remote_basename(source.path)
    if not local.parent.is_dir():
        raise TransferError(f"{local.parent}: no such folder")
    return local


async def copy(
    manager: ConnectionManager,
    resolve: Callable[[str], Awaitable[HostRecord]],
    source: Endpoint,
    dest: Endpoint,
    *,
    actor: str | None = None,
) -> CopyResult:
    """Copy one file between here and a host, verified; audited (intent before, outcome after)."""
    if (source.host is None) == (dest.host is None):
        raise UsageError("exactly one side must be HOST:PATH (copies between hosts go via here)")
    upload = dest.host is not None
    host = await resolve(dest.host if upload else source.host or "")
    local = _local_side(source, dest, upload)
    action = "transfer.put" if upload else "transfer.get"
    remote = dest.path if upload else source.path
    seq = await audit.intent(
        action,
        actor=actor,
        client=host.client,
        target=host.full_name,
        detail={"local": str(local), "remote": remote},
    )
    try:
        async with manager.connection(host) as conn:
            if upload:
                remote = await _remote_target(conn, host, remote, local)
                result = await conn.put_file(local, remote)
            else:
                result = await conn.get_file(remote, local)
    except MsspError as exc:
        await audit.outcome(
            seq,
            action,
            actor=actor,
            client=host.client,
            target=host.full_name,
            result="failed",
            detail={"local": str(local), "remote": remote, "error": exc.message},
        )
        raise
    await audit.outcome(
        seq,
        action,
        actor=actor,
        client=host.client,
        target=host.full_name,
        result="ok",
        detail={
            "local": str(local),
            "remote": result.remote_path,
            "sha256": result.sha256,
            "bytes": result.size,
        },
    )
    return CopyResult(
        direction="upload" if upload else "download",
        host=host.full_name,
        local_path=str(result.local_path),
        remote_path=result.remote_path,
        size=result.size,
        sha256=result.sha256,
        duration=result.duration,
    )


def collect_path(dest: Path, host: HostRecord, remote: str) -> Path:
    """dest/client/site/host/<file name>: one folder per host, never a clash between hosts."""
    return dest / host.client / host.site / host.name / _remote_basename(remote)


async def collect(
    manager: ConnectionManager,
    hosts: Sequence[HostRecord],
    remote: str,
    dest: Path,
    *,
    parallel: int = 10,
    actor: str | None = None,
    progress: Callable[[CollectItem, int, int], None] | None = None,
) -> list[CollectItem]:
    """Fetch ``remote`` from every host into a folder per host, ``parallel`` at a time.

    Each host's copy is verified and audited; a failure on one host never stops the others.
    Results come back in the order of ``hosts``.
    """
    if parallel < 1:
        raise UsageError("parallel must be at least 1")
    _remote_basename(remote)
    gate = asyncio.Semaphore(parallel)
    done = 0

    async def one(host: HostRecord) -> CollectItem:
        nonlocal done
        target = collect_path(dest, host, remote)
        async with gate:
            item = await _collect_one(manager, host, remote, target, actor)
        done += 1
        if progress is not None:
            with contextlib.suppress(Exception):
                progress(item, done, len(hosts))
        return item

    return list(await asyncio.gather(*(one(h) for h in hosts)))


async def _collect_one(
    manager: ConnectionManager, host: HostRecord, remote: str, target: Path, actor: str | None
) -> CollectItem:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return CollectItem(host.full_name, "failed", str(target), error=exc.strerror or str(exc))
    try:
        async with manager.connection(host) as conn:
            result = await conn.get_file(remote, target)
        item = CollectItem(host.full_name, "ok", str(target), result.size, result.sha256)
    except ConnectError as exc:
        # authentication and host-key refusals are failures to fix, not a host that is away
        state = "unreachable" if exc.retryable else "failed"
        item = CollectItem(host.full_name, state, str(target), error=exc.message)
    except MsspError as exc:
        item = CollectItem(host.full_name, "failed", str(target), error=exc.message)
    if item.state != "ok":
        with contextlib.suppress(OSError):  # no empty per-host folders for failed hosts
            target.parent.rmdir()
    await audit.record(
        "transfer.collect",
        actor=actor,
        client=host.client,
        target=host.full_name,
        result="ok" if item.state == "ok" else item.state,
        detail={
            "remote": remote,
            "local": item.local_path,
            "sha256": item.sha256 or None,
            "bytes": item.size,
            "error": item.error or None,
        },
    )
    return item


def collect_exit_code(items: Sequence[CollectItem]) -> int:
    """0 all ok; 4 some failed; 5 some unreachable and none failed (the run exit codes)."""
    states = {i.state for i in items}
    if "failed" in states:
        return 4
    if "unreachable" in states:
        return 5
    return 0


def human_size(n: int) -> str:
    """1234567 -> '1.2 MB' (decimal units, as file managers show them)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"
