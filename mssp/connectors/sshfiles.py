"""Verified file transfer over SFTP: the SHA-256 is computed on the far side and compared.

Uploads go to a temporary name beside the target and are renamed into place only once the host's
hash matches, so a corrupted transfer never replaces a file; downloads do the same locally.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING

import asyncssh

from mssp.connectors.base import TransferResult
from mssp.connectors.ssherrors import map_error
from mssp.errors import TransferError

if TYPE_CHECKING:
    from mssp.connectors.ssh import SSHConnector

HASH_TIMEOUT = 600.0


async def remote_sha256(connector: SSHConnector, remote: str) -> str:
    result = await connector.run(f"sha256sum -- {shlex.quote(remote)}", timeout=HASH_TIMEOUT)
    digest = result.stdout.split(maxsplit=1)[0] if result.stdout else ""
    if result.exit_status != 0 or len(digest) != 64:
        raise TransferError(
            f"{connector.options.host}: cannot hash {remote} on the host: "
            f"{result.stderr.strip()[:200] or 'sha256sum failed'}"
        )
    return digest.lower()


async def put_file(
    connector: SSHConnector,
    conn: asyncssh.SSHClientConnection,
    local: Path,
    remote: str,
    mode: int | None,
) -> TransferResult:
    host = connector.options.host
    started = time.monotonic()
    try:
        digest, size = await asyncio.to_thread(sha256_file, local)
    except OSError as exc:
        raise TransferError(f"cannot read {local}: {exc.strerror}") from None
    temp = f"{remote}.mssp-{secrets.token_hex(6)}"
    try:
        async with conn.start_sftp_client() as sftp:
            await sftp.put(str(local), temp)
            try:
                await settle_attributes(sftp, temp, remote, mode)
                remote_digest = await remote_sha256(connector, temp)
                if remote_digest != digest:
                    raise TransferError(
                        f"{host}: {remote}: SHA-256 on the host ({remote_digest}) differs from "
                        f"the local file ({digest}); the target was not replaced"
                    )
                await sftp.posix_rename(temp, remote)
            except BaseException:
                with contextlib.suppress(Exception):
                    await sftp.remove(temp)
                raise
    except asyncssh.SFTPError as exc:
        raise TransferError(f"{host}: {remote}: {exc.reason}") from None
    except (asyncssh.Error, OSError) as exc:
        raise map_error(exc, host, during="put_file") from None
    return TransferResult(local, remote, size, digest, time.monotonic() - started)


async def get_file(
    connector: SSHConnector, conn: asyncssh.SSHClientConnection, remote: str, local: Path
) -> TransferResult:
    host = connector.options.host
    started = time.monotonic()
    if not local.parent.is_dir():
        raise TransferError(f"cannot write {local}: its directory does not exist")
    remote_digest = await remote_sha256(connector, remote)
    temp = local.with_name(f".{local.name}.mssp-{secrets.token_hex(6)}")
    try:
        async with conn.start_sftp_client() as sftp:
            await sftp.get(remote, str(temp))
        digest, size = await asyncio.to_thread(sha256_file, temp)
        if digest != remote_digest:
            raise TransferError(
                f"{host}: {remote}: local SHA-256 ({digest}) differs from the host's "
                f"({remote_digest}); nothing was written to {local}"
            )
        os.replace(temp, local)
    except asyncssh.SFTPError as exc:
        raise TransferError(f"{host}: {remote}: {exc.reason}") from None
    except asyncssh.Error as exc:
        raise map_error(exc, host, during="get_file") from None
    except OSError as exc:  # the local side: disk full, permissions
        raise TransferError(f"cannot write {local}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return TransferResult(local, remote, size, digest, time.monotonic() - started)


async def settle_attributes(
    sftp: asyncssh.SFTPClient, temp: str, remote: str, mode: int | None
) -> None:
    """Apply ``mode``; without it a replaced file keeps its permissions (and owner if allowed)."""
    if mode is not None:
        await sftp.chmod(temp, mode)
        return
    try:
        current = await sftp.stat(remote)
    except asyncssh.SFTPNoSuchFile:
        return
    if current.permissions is not None:
        await sftp.chmod(temp, current.permissions & 0o7777)
    if current.uid is not None and current.gid is not None:
        with contextlib.suppress(asyncssh.SFTPError):  # only root may give files away
            await sftp.chown(temp, current.uid, current.gid)


def sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
