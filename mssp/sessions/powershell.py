"""`mssp ps`: a line-based PowerShell prompt on a Windows host over WinRM, recorded.

Each line runs as one PowerShell invocation over the host's WinRM connection: output is printed as
it comes back, errors in red, a non-zero exit status is shown, ``exit`` (or end of input) leaves.
The location carries over between lines (``cd`` works): the prompt remembers it and each line
starts there. Variables do not carry over (each line is its own PowerShell process); the banner
says so. The session is recorded like a shell: the prompt, the line as typed (what the screen
showed) and the output; nothing is read from the host while you type, so there is no password
prompt to leak.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mssp.config import Settings
from mssp.connections import ConnectionManager
from mssp.errors import CommandTimeout, MsspError, UsageError
from mssp.inventory import HostRecord
from mssp.sessions.recorder import Notice, RecordedSession

RED, DIM, RESET = "\x1b[31m", "\x1b[2m", "\x1b[0m"
LOCATION_MARK = "__MSSP_LOCATION__="
_EXIT = re.compile(r"^exit(?:\s+(-?\d+))?\s*;?\s*$", re.IGNORECASE)

ReadLine = Callable[[str], Awaitable[str | None]]
"""Show the prompt and return one line (None at end of input)."""


@dataclass(frozen=True)
class PowerShellResult:
    exit_status: int
    commands: int
    recording_id: int | None
    recording_sha256: str


def wrap(line: str, location: str | None) -> str:
    """The script sent for one line: start in ``location``, run the line, report the location.

    The exit status is the line's native exit code, else 1 when its last command failed ($?).
    """
    start = ""
    if location:
        quoted = location.replace("'", "''")  # a PowerShell single-quoted string
        start = f"Set-Location -LiteralPath '{quoted}'\n"
    return (
        f"{start}{line}\n"
        "$__mssp_ok = $?; $__mssp_status = $LASTEXITCODE\n"
        f'[Console]::Out.Write("`n{LOCATION_MARK}" + (Get-Location).Path)\n'
        "if ($__mssp_status) { exit $__mssp_status } elseif (-not $__mssp_ok) { exit 1 }"
    )


def split_location(stdout: str) -> tuple[str, str | None]:
    """(output without the marker line, the location it reported or None)."""
    head, sep, tail = stdout.rpartition(f"\n{LOCATION_MARK}")
    if not sep:
        return stdout, None
    return head, tail.strip() or None


def terminal_line_reader() -> ReadLine:
    """Lines from the terminal with ``input()`` (readline editing when available).

    Each read runs on a daemon thread, not the default executor: a read still blocked when the
    session is interrupted must not keep the process from exiting.
    """

    async def read_line(prompt: str) -> str | None:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[str | None] = loop.create_future()

        def deliver(value: str | None) -> None:
            if not answer.done():
                answer.set_result(value)

        def worker() -> None:
            try:
                line: str | None = input(prompt)
            except (EOFError, OSError):
                line = None
            loop.call_soon_threadsafe(deliver, line)

        threading.Thread(target=worker, name="mssp-ps-input", daemon=True).start()
        return await answer

    return read_line


async def powershell_session(
    settings: Settings,
    manager: ConnectionManager,
    host: HostRecord,
    *,
    read_line: ReadLine,
    write: Callable[[str], None],
    color: bool = True,
    policy: str = "refuse",
    notice: Notice,
    actor: str | None = None,
    timeout: float | None = None,
) -> PowerShellResult:
    if host.transport != "winrm":
        raise UsageError(f"{host.full_name} is an {host.transport} host: use `mssp ssh`")
    record = await RecordedSession.start(
        settings,
        host,
        kind="powershell",
        command=None,
        cols=120,
        rows=40,
        term="",
        policy=policy,
        notice=notice,
        actor=actor,
    )

    def show(text: str, style: str = "") -> None:
        shown = f"{style}{text}{RESET}" if style and color else text
        write(shown)
        record.output(shown.encode("utf-8"))

    location: str | None = None
    status, commands, error = 0, 0, ""
    try:
        async with manager.connection(host) as conn:
            show(
                f"PowerShell on {host.full_name} over WinRM; each line runs on its own "
                "(the location carries over, variables do not). `exit` leaves.\n",
                DIM,
            )
            while True:
                prompt = f"PS {host.name} {location or ''}> "
                line = await read_line(prompt)
                if line is None:
                    show(prompt + "\n")
                    break
                record.output((prompt + line + "\n").encode("utf-8"))
                line = line.strip()
                if not line:
                    continue
                leave = _EXIT.match(line)
                if leave:
                    status = int(leave.group(1) or 0)
                    break
                commands += 1
                try:
                    result = await conn.run(
                        wrap(line, location), timeout=timeout or settings.command_timeout
                    )
                except CommandTimeout as exc:
                    show(f"{exc.message}\n", RED)
                    continue
                out, where = split_location(result.stdout)
                location = where or location
                if out:
                    show(out if out.endswith("\n") else out + "\n")
                if result.stderr:
                    err = result.stderr
                    show(err if err.endswith("\n") else err + "\n", RED)
                if result.exit_status not in (0, None):
                    show(f"(exit {result.exit_status})\n", DIM)
                status = result.exit_status or 0
    except BaseException as exc:  # Ctrl-C (cancellation) too: the record is always closed
        error = exc.message if isinstance(exc, MsspError) else "interrupted"
        with contextlib.suppress(MsspError):
            await record.close(exit_status=None, error=error, detail={"commands": commands})
        raise
    summary = await record.close(exit_status=status, detail={"commands": commands})
    return PowerShellResult(status, commands, summary.recording_id, summary.sha256)
