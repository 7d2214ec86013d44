"""Where session recordings live (settings.data_dir/recordings/) and their index in the database.

A recording is opened before the session starts (file created, row written) and finished after it
ends (SHA-256 and size of the file as written, exit status). The file's hash also goes into the
audit entry of the session, so a recording edited afterwards no longer matches either record.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mssp import asciicast
from mssp.config import Settings
from mssp.errors import NotFoundError, RecordingError, UsageError

POLICIES = ("refuse", "warn")
"""What happens when a recording cannot be written: refuse the session, or warn and go on."""


@dataclass(frozen=True)
class RecordingInfo:
    """One entry of the recording index."""

    id: int
    host: str
    """Full inventory name client/site/host."""
    client: str
    actor: str
    kind: str
    """"ssh" or "powershell"."""
    command: str
    started_at: datetime
    ended_at: datetime | None
    path: str
    sha256: str
    bytes: int
    exit_status: int | None
    state: str
    """recording, finished, failed or incomplete."""
    error: str

    def as_dict(self) -> dict[str, object]:
        out = dict(self.__dict__)
        out["started_at"] = self.started_at.isoformat()
        out["ended_at"] = self.ended_at.isoformat() if self.ended_at else None
        return out


def recordings_dir(settings: Settings) -> Path:
    return settings.data_dir / "recordings"


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise UsageError(f"recording policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    return policy


def new_recording_path(settings: Settings, host_full_name: str, now: datetime) -> Path:
    """A fresh, unguessable file name: date, host and a random suffix (never overwritten)."""
    safe_host = host_full_name.replace("/", "_")
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    folder = recordings_dir(settings) / now.strftime("%Y-%m")
    return folder / f"{stamp}-{safe_host}-{secrets.token_hex(4)}.cast"


def open_writer(path: Path, *, cols: int, rows: int, title: str, term: str) -> asciicast.Writer:
    """Create the recording file (0600, in a 0700 folder); RecordingError if it cannot be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(path.parent.parent, 0o700)
            os.chmod(path.parent, 0o700)
    except OSError as exc:
        raise RecordingError(f"cannot create {path.parent}: {exc.strerror}") from None
    header = asciicast.Header(
        width=max(1, cols),
        height=max(1, rows),
        timestamp=int(datetime.now(UTC).timestamp()),
        title=title,
        env={"TERM": term, "SHELL": ""} if term else {},
    )
    return asciicast.Writer(path, header)


async def add(
    *,
    host: str,
    client: str,
    actor: str,
    kind: str,
    command: str,
    path: Path,
    started_at: datetime,
    audit_seq: int | None,
) -> int:
    from mssp.models.sessions import Recording

    row = await Recording.create(
        host_name=host,
        client_slug=client,
        actor=actor,
        kind=kind,
        command=command,
        started_at=started_at,
        path=str(path),
        audit_seq=audit_seq,
    )
    return int(row.id)


async def finish(
    recording_id: int,
    *,
    sha256: str,
    size: int,
    exit_status: int | None,
    state: str,
    error: str = "",
) -> None:
    from mssp.models.sessions import Recording

    await Recording.filter(id=recording_id).update(
        ended_at=datetime.now(UTC),
        sha256=sha256,
        bytes=size,
        exit_status=exit_status,
        state=state,
        error=error[:2000],
    )


def _info(r: Any) -> RecordingInfo:
    """A RecordingInfo from a Recording row."""
    return RecordingInfo(
        id=r.id,
        host=r.host_name,
        client=r.client_slug,
        actor=r.actor,
        kind=r.kind,
        command=r.command,
        started_at=r.started_at,
        ended_at=r.ended_at,
        path=r.path,
        sha256=r.sha256,
        bytes=r.bytes,
        exit_status=r.exit_status,
        state=r.state,
        error=r.error,
    )


async def list_recordings(
    *, host: str | None = None, client: str | None = None, limit: int | None = None
) -> list[RecordingInfo]:
    """Newest first."""
    from mssp.models.sessions import Recording

    query = Recording.all().order_by("-id")
    if host is not None:
        query = query.filter(host_name=host)
    if client is not None:
        query = query.filter(client_slug=client)
    if limit:
        query = query.limit(limit)
    return [_info(row) for row in await query]


async def get_recording(recording_id: int) -> RecordingInfo:
    from mssp.models.sessions import Recording

    row = await Recording.get_or_none(id=recording_id)
    if row is None:
        raise NotFoundError(f"no recording with id {recording_id}")
    return _info(row)


def verify_file(info: RecordingInfo) -> None:
    """Refuse a recording whose file no longer hashes as recorded (edited or replaced)."""
    path = Path(info.path)
    try:
        digest = asciicast.file_sha256(path)
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc.strerror}") from None
    if info.sha256 and digest != info.sha256:
        raise RecordingError(
            f"recording {info.id}: {path} has changed since it was recorded "
            f"(SHA-256 {digest}, recorded {info.sha256})"
        )
