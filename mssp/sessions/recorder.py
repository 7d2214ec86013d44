"""One interactive session's record: the asciicast file, its index row and its audit entries.

Order of events: the recording file is created first (the policy decides whether a failure here
refuses the session or only warns), then the audit intent (an audit that cannot be written always
refuses the session), then the index row. ``close`` seals the file and writes its SHA-256 into the
index and the audit outcome. Only output is recorded: typed keys (passwords too) never are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mssp import asciicast, audit
from mssp.config import Settings
from mssp.errors import RecordingError
from mssp.inventory import HostRecord
from mssp.sessions import recordings

Notice = Callable[[str], None]


@dataclass(frozen=True)
class SessionRecord:
    """What is known about a session once it has ended."""

    recording_id: int | None
    """The index row; None when the session was not recorded (policy warn)."""
    path: Path | None
    sha256: str
    size: int
    state: str
    """finished, failed, incomplete (the recording broke during the session) or unrecorded."""
    recording_error: str
    audit_seq: int


class RecordedSession:
    """Open with ``await RecordedSession.start(...)``; feed output; ``await close(...)`` once."""

    def __init__(
        self,
        *,
        host: HostRecord,
        kind: str,
        policy: str,
        notice: Notice,
        writer: asciicast.Writer | None,
        path: Path | None,
        error: str,
    ) -> None:
        self.host = host
        self.kind = kind
        self.policy = recordings.check_policy(policy)
        self.notice = notice
        self.writer = writer
        self.path = path
        self.recording_error = error
        self.recording_id: int | None = None
        self.audit_seq = 0
        self._closed = False

    @classmethod
    async def start(
        cls,
        settings: Settings,
        host: HostRecord,
        *,
        kind: str,
        command: str | None,
        cols: int,
        rows: int,
        term: str,
        policy: str,
        notice: Notice,
        actor: str | None = None,
        writer_factory: Callable[..., asciicast.Writer] = recordings.open_writer,
    ) -> RecordedSession:
        recordings.check_policy(policy)
        now = datetime.now(UTC)
        path: Path | None = recordings.new_recording_path(settings, host.full_name, now)
        title = f"{host.full_name}" + (f": {command}" if command else "")
        writer: asciicast.Writer | None = None
        error = ""
        try:
            writer = writer_factory(path, cols=cols, rows=rows, title=title, term=term)
        except RecordingError as exc:
            if policy == "refuse":
                raise RecordingError(
                    f"{exc.message}; session refused (recording policy 'refuse'; "
                    "--recording-policy warn lets it run unrecorded)"
                ) from None
            error = exc.message
            notice(f"warning: {error}; this session is NOT recorded (recording policy 'warn')")
            path = None
        session = cls(
            host=host,
            kind=kind,
            policy=policy,
            notice=notice,
            writer=writer,
            path=path,
            error=error,
        )
        actor = actor or audit.default_actor()
        try:
            session.audit_seq = await audit.intent(
                f"session.{kind}",
                actor=actor,
                client=host.client,
                target=host.full_name,
                detail={
                    "command": command or "",
                    "recording": str(path) if path else None,
                    "recording_error": error or None,
                },
            )
            if path is not None:
                session.recording_id = await recordings.add(
                    host=host.full_name,
                    client=host.client,
                    actor=actor,
                    kind=kind,
                    command=command or "",
                    path=path,
                    started_at=now,
                    audit_seq=session.audit_seq,
                )
        except BaseException:
            session._discard()
            raise
        return session

    def _discard(self) -> None:
        """Nothing happened: drop the empty recording file."""
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
            self.writer = None
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()

    # ---- during the session -------------------------------------------------------------------
    @property
    def recording(self) -> bool:
        return self.writer is not None

    def output(self, data: bytes) -> None:
        """Record terminal output. Under policy refuse a write failure raises RecordingError."""
        if self.writer is None:
            return
        try:
            self.writer.output(data)
        except RecordingError as exc:
            self._broken(exc)

    def resize(self, cols: int, rows: int) -> None:
        if self.writer is None:
            return
        try:
            self.writer.resize(cols, rows)
        except RecordingError as exc:
            self._broken(exc)

    def _broken(self, exc: RecordingError) -> None:
        self.recording_error = exc.message
        if self.policy == "refuse":
            raise RecordingError(f"{exc.message}; session ended (recording policy 'refuse')")
        self.notice(f"warning: {exc.message}; the rest of this session is NOT recorded")
        with contextlib.suppress(Exception):
            self._seal()

    def _seal(self) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close()

    # ---- the end ---------------------------------------------------------------------------------
    async def close(
        self, *, exit_status: int | None, error: str = "", detail: dict[str, Any] | None = None
    ) -> SessionRecord:
        """Seal the recording, index its hash, write the audit outcome. Call exactly once."""
        if self._closed:
            raise RecordingError("session record already closed")
        self._closed = True
        with contextlib.suppress(RecordingError):
            self._seal()
        sha256, size = "", 0
        if self.path is not None:
            with contextlib.suppress(OSError):
                sha256 = asciicast.file_sha256(self.path)
                size = self.path.stat().st_size
        if self.path is None:
            state = "unrecorded"
        elif self.recording_error:
            state = "incomplete"
        elif error:
            state = "failed"
        else:
            state = "finished"
        if self.recording_id is not None:
            await recordings.finish(
                self.recording_id,
                sha256=sha256,
                size=size,
                exit_status=exit_status,
                state=state,
                error=error or self.recording_error,
            )
        await audit.outcome(
            self.audit_seq,
            f"session.{self.kind}",
            client=self.host.client,
            target=self.host.full_name,
            result="failed" if error else "ok",
            detail={
                "exit_status": exit_status,
                "error": error or None,
                "recording_id": self.recording_id,
                "recording_sha256": sha256 or None,
                "recording_bytes": size,
                "recording_state": state,
                "recording_error": self.recording_error or None,
                **(detail or {}),
            },
        )
        return SessionRecord(
            recording_id=self.recording_id,
            path=self.path,
            sha256=sha256,
            size=size,
            state=state,
            recording_error=self.recording_error,
            audit_seq=self.audit_seq,
        )
