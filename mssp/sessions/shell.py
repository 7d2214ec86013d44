"""`mssp ssh`: an interactive PTY shell on an SSH host, recorded, in the local terminal's raw mode.

The local terminal is put in raw mode only around the live session and is restored in ``finally``
(also on SIGTERM/SIGHUP, which end the session rather than the process). The remote terminal
follows the local window (SIGWINCH). The host's exit status becomes the command's.

From the dashboard, ``run_shell_blocking`` runs ``mssp ssh HOST`` as a child process inside
``App.suspend()`` (see its docstring for why a child and not this process's event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mssp.config import Settings
from mssp.connections import ConnectionManager
from mssp.errors import MsspError, RecordingError, UsageError
from mssp.inventory import HostRecord
from mssp.sessions.recorder import Notice, RecordedSession
from mssp.sessions.terminal import TerminalIO, raw_terminal, terminal_size, write_all

EXIT_WAIT = 10.0
"""Seconds to wait for the exit status once the output has ended."""
LOST_STATUS = 255
"""The status returned when the session ended without one (connection lost, signal), as ssh."""


@dataclass(frozen=True)
class ShellResult:
    """How an interactive session ended."""

    exit_status: int
    """The remote status; 255 when the connection was lost or the process was killed."""
    recording_id: int | None
    recording_path: Path | None
    recording_sha256: str
    recording_state: str
    duration: float
    ended_by: str
    """"exit" (the remote process ended), "lost" (connection), "signal" (local SIGTERM/SIGHUP),
    "recording" (the recording broke under policy refuse)."""


async def interactive_shell(
    settings: Settings,
    manager: ConnectionManager,
    host: HostRecord,
    *,
    command: str | None = None,
    policy: str = "refuse",
    io: TerminalIO | None = None,
    notice: Notice | None = None,
    actor: str | None = None,
    writer_factory: Callable[..., Any] | None = None,
) -> ShellResult:
    """Run a login shell (or ``command``) on ``host`` in a PTY wired to the local terminal."""
    io = io or TerminalIO()
    notice = notice or _stderr_notice
    if host.transport != "ssh":
        raise UsageError(
            f"{host.full_name} is a {host.transport} host: use `mssp ps` for a PowerShell prompt"
        )
    cols, rows = terminal_size(io)
    extra = {"writer_factory": writer_factory} if writer_factory else {}
    record = await RecordedSession.start(
        settings,
        host,
        kind="ssh",
        command=command,
        cols=cols,
        rows=rows,
        term=io.term,
        policy=policy,
        notice=notice,
        actor=actor,
        **extra,
    )
    started = time.monotonic()
    status: int | None = None
    ended_by = "exit"
    error = ""
    try:
        async with manager.connection(host) as conn:
            open_pty = getattr(conn, "open_pty", None)
            if open_pty is None:
                raise UsageError(f"{host.full_name}: this connection offers no terminal")
            session = await open_pty(io.term, cols, rows, command=command)
            try:
                status, ended_by = await _drive(session, record, io, notice)
            finally:
                session.close()  # harmless after a normal exit; ends the channel otherwise
    except BaseException as exc:
        error = _describe(exc)
        # keep the original error: a failing outcome entry must not hide why the session failed
        with contextlib.suppress(MsspError):
            await record.close(exit_status=None, error=error)
        raise
    if ended_by == "recording":
        error = f"recording failed: {record.recording_error}"
    final = status if status is not None else LOST_STATUS
    duration = round(time.monotonic() - started, 3)
    summary = await record.close(
        exit_status=status, error=error, detail={"ended_by": ended_by, "duration": duration}
    )
    if ended_by == "recording":
        raise RecordingError(
            f"{record.recording_error}; the session was ended (recording policy 'refuse')"
        )
    return ShellResult(
        exit_status=final,
        recording_id=summary.recording_id,
        recording_path=summary.path,
        recording_sha256=summary.sha256,
        recording_state=summary.state,
        duration=duration,
        ended_by=ended_by,
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MsspError):
        return exc.message
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
        return "interrupted"
    return type(exc).__name__


def _stderr_notice(message: str) -> None:
    # \r\n: in raw mode a bare \n would not return the cursor to the left margin
    write_all(2, f"\r\n[mssp] {message}\r\n".encode())


async def _drive(
    session: Any, record: RecordedSession, io: TerminalIO, notice: Notice
) -> tuple[int | None, str]:
    """Pump keys to the host and output to the screen until the remote side ends."""
    loop = asyncio.get_running_loop()
    ended_by = "exit"
    stop = asyncio.Event()

    def on_key() -> None:
        try:
            data = os.read(io.stdin_fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            session.write(data)  # never recorded: typed passwords stay out of the recording
        else:  # local EOF (stdin was not a terminal): pass it on, stop reading
            loop.remove_reader(io.stdin_fd)
            with contextlib.suppress(Exception):
                session.stdin.write_eof()

    def on_winch() -> None:
        cols, rows = terminal_size(io)
        with contextlib.suppress(Exception):
            session.resize(cols, rows)
        try:
            record.resize(cols, rows)
        except RecordingError:
            stop.set()

    def on_terminate() -> None:
        nonlocal ended_by
        ended_by = "signal"
        stop.set()

    async def pump_output() -> None:
        nonlocal ended_by
        while True:
            try:
                data = await session.read(65536)
            except Exception:  # the connection broke: asyncssh raises its own errors here
                ended_by = "lost"
                return
            if not data:
                return
            write_all(io.stdout_fd, data)
            try:
                record.output(data)
            except RecordingError:
                ended_by = "recording"
                return

    handled: list[int] = []
    feeder: asyncio.Future[None] | None = None
    with raw_terminal(io.stdin_fd):
        try:
            feeder = _watch_input(loop, io.stdin_fd, on_key, session)
            for signum, handler in (
                (signal.SIGWINCH, on_winch),
                (signal.SIGTERM, on_terminate),
                (signal.SIGHUP, on_terminate),
            ):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(signum, handler)
                    handled.append(signum)
            pump = asyncio.ensure_future(pump_output())
            stopper = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({pump, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (pump, stopper):
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            if stop.is_set() and ended_by == "exit":
                ended_by = "recording"
            if ended_by != "exit":
                session.close()
            status = None
            if ended_by in ("exit", "lost"):
                try:
                    status = await session.wait(timeout=EXIT_WAIT)
                except Exception:
                    status = None
            if status is None and ended_by == "exit":
                ended_by = "lost"
        finally:
            with contextlib.suppress(Exception):
                loop.remove_reader(io.stdin_fd)
            if feeder is not None:
                feeder.cancel()
            for signum in handled:
                loop.remove_signal_handler(signum)
    if ended_by == "lost":
        notice("the connection was lost" if status is None else "session ended")
    return status, ended_by


def _watch_input(
    loop: asyncio.AbstractEventLoop, fd: int, on_key: Callable[[], None], session: Any
) -> asyncio.Future[None] | None:
    """Watch ``fd`` for keys; a file or /dev/null (which epoll refuses) is sent whole, then EOF."""
    try:
        loop.add_reader(fd, on_key)
        return None
    except PermissionError:
        pass

    async def feed() -> None:
        while data := await loop.run_in_executor(None, os.read, fd, 65536):
            session.write(data)
        with contextlib.suppress(Exception):
            session.stdin.write_eof()

    return asyncio.ensure_future(feed())


# ---- the dashboard's `s` key -------------------------------------------------------------------
def child_environment(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child `mssp` that must use the same home and database."""
    env = dict(os.environ if base is None else base)
    if settings.config_dir == settings.data_dir:
        env["MSSP_HOME"] = str(settings.config_dir)
    else:
        env.pop("MSSP_HOME", None)
        env["XDG_CONFIG_HOME"] = str(settings.config_dir.parent)
        env["XDG_DATA_HOME"] = str(settings.data_dir.parent)
    if settings.database_url:
        env["MSSP_DATABASE_URL"] = settings.database_url
    return env


def shell_command(host_full_name: str, command: str | None = None) -> list[str]:
    """The argv of `mssp ssh HOST [-- COMMAND]` run with this Python."""
    argv = [
        sys.executable,
        "-c",
        "import sys; sys.argv[0] = 'mssp'; from mssp.cli import main; main()",
        "ssh",
        host_full_name,
    ]
    if command:
        argv += ["--", command]
    return argv


def run_shell_blocking(
    settings: Settings,
    host_full_name: str,
    *,
    command: str | None = None,
    pause_on_error: bool = True,
) -> int:
    """Run `mssp ssh HOST` in a child process on this terminal; return its exit status.

    For the dashboard's ``s`` key::

        with self.batch_update(), self.suspend():
            try:
                status = run_shell_blocking(settings, host.full_name)
            except Exception as exc:  # catch inside the block (FIELD-NOTES §5)
                ...

    Why a child process: an interactive session needs the terminal, signals (SIGWINCH) and a
    loop of its own. Inside ``App.suspend()`` a blocking call is the one shape that holds
    (FIELD-NOTES §5: an async subprocess lets the app repaint into a stopped output and hang).
    The cost: the dashboard's event loop is frozen until the session ends. The child opens the
    database itself and unlocks the vault the way every command does (MSSP_VAULT_PASSPHRASE,
    the key file, else it asks on the terminal). Errors are printed by the child; the return is
    its exit status (the remote status, or mssp's exit code when it could not connect); with
    ``pause_on_error`` a non-zero status waits for Enter so the message is read before repaint.
    """
    proc = subprocess.run(shell_command(host_full_name, command), env=child_environment(settings))
    if pause_on_error and proc.returncode != 0 and os.isatty(0):
        # the app repaints over the screen on resume: keep an error message readable until seen
        with contextlib.suppress(Exception):
            input(f"[mssp] session ended with status {proc.returncode}; press Enter ")
    return proc.returncode
