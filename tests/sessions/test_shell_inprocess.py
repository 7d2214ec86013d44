"""The shell session in-process on a real PTY pair: a recording that breaks mid-session (policy
refuse ends the session, warn goes on unrecorded), a Windows host refused, on both databases."""

from __future__ import annotations

import asyncio
import os
import termios
from pathlib import Path

import pytest

from mssp import asciicast, audit
from mssp.config import Settings
from mssp.errors import RecordingError, UsageError
from mssp.sessions import recordings
from mssp.sessions.shell import interactive_shell
from mssp.sessions.terminal import TerminalIO
from tests.sessions.helpers import manager_for, seed
from tests.sshserver import ssh_test_server


class _FailingWriter(asciicast.Writer):
    """A recording whose disk fills up after ``budget`` output events."""

    budget = 3

    def output(self, data: bytes) -> None:
        type(self).budget -= 1
        if type(self).budget < 0:
            raise RecordingError(f"cannot write recording {self.path}: No space left on device")
        super().output(data)


def _factory(path: Path, *, cols: int, rows: int, title: str, term: str) -> asciicast.Writer:
    return _FailingWriter(path, asciicast.Header(width=cols, height=rows, title=title))


async def _run(settings: Settings, policy: str, script: bytes):
    master, slave = os.openpty()
    before = termios.tcgetattr(slave)
    notices: list[str] = []
    async with ssh_test_server() as srv:
        vault, (host,) = await seed(settings, [srv])
        os.write(master, script)  # typed ahead: the shell reads it once it runs
        async with manager_for(settings, vault) as manager:
            task = asyncio.ensure_future(
                interactive_shell(
                    settings,
                    manager,
                    host,
                    policy=policy,
                    io=TerminalIO(stdin_fd=slave, stdout_fd=slave, term="xterm"),
                    notice=notices.append,
                    writer_factory=_factory,
                )
            )
            loop = asyncio.get_running_loop()
            screen = bytearray()

            def drain() -> None:
                try:
                    screen.extend(os.read(master, 65536))
                except OSError:
                    loop.remove_reader(master)

            loop.add_reader(master, drain)
            try:
                outcome = await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 30)
            finally:
                loop.remove_reader(master)
    after = termios.tcgetattr(slave)
    os.close(master)
    os.close(slave)
    assert after == before  # the terminal is restored either way
    return outcome[0], notices, bytes(screen)


SCRIPT = b"for i in 1 2 3 4 5 6; do echo line-$i; sleep 0.05; done; exit 3\r"


async def test_recording_failure_mid_session_ends_it_under_refuse(db: Settings) -> None:
    _FailingWriter.budget = 3
    result, _, _ = await _run(db, "refuse", SCRIPT)
    assert isinstance(result, RecordingError) and "No space left" in result.message
    (rec,) = await recordings.list_recordings()
    assert rec.state == "incomplete" and "No space left" in rec.error
    outcome = (await audit.entries(action="session.ssh"))[-1]
    assert outcome.result == "failed"


async def test_recording_failure_mid_session_warns_and_goes_on_under_warn(db: Settings) -> None:
    _FailingWriter.budget = 3
    result, notices, screen = await _run(db, "warn", SCRIPT)
    assert not isinstance(result, BaseException), result
    assert result.exit_status == 3 and b"line-6" in screen
    assert any("NOT recorded" in n for n in notices)
    (rec,) = await recordings.list_recordings()
    assert rec.state == "incomplete" and rec.exit_status == 3
    # what was recorded before the failure is intact and still verifies
    recordings.verify_file(rec)
    asciicast.read(Path(rec.path))


async def test_windows_host_is_sent_to_ps(db: Settings) -> None:
    from mssp.store.inventory import create_host

    vault, _ = await seed(db, [])
    host = await create_host("acme", "hq", "win1", address="127.0.0.1", transport="winrm")
    async with manager_for(db, vault) as manager:
        with pytest.raises(UsageError, match="mssp ps"):
            await interactive_shell(db, manager, host)
    assert await recordings.list_recordings() == []
