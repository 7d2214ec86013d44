"""`mssp ssh|ps` and `mssp recordings list|play`: interactive sessions, recorded (transfers are in
transfers.py, forwards in forwards.py).

HOST is a full name (client/site/host) or a host name that only one host in the inventory has.
Interactive sessions are recorded (output only) under the data folder and audited; forwards and
transfers are audited too.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import click

from mssp.cli.common import (
    CliContext,
    emit_json,
    handle_errors,
    json_option,
    note,
    pass_cli,
    print_table,
)
from mssp.cli.init import open_vault, run_with_database

POLICY_HELP = (
    "When the recording cannot be written: refuse the session, or warn and go on unrecorded "
    "[env MSSP_RECORDING_POLICY; default refuse]."
)


def _policy_option(func: Any) -> Any:
    return click.option(
        "--recording-policy",
        type=click.Choice(["refuse", "warn"]),
        envvar="MSSP_RECORDING_POLICY",
        default="refuse",
        show_default=True,
        help=POLICY_HELP,
    )(func)


# ---- ssh ---------------------------------------------------------------------------------
@click.command("ssh", context_settings={"ignore_unknown_options": False})
@click.argument("host")
@click.argument("command", nargs=-1)
@_policy_option
@pass_cli
def ssh_cmd(cli: CliContext, host: str, command: tuple[str, ...], recording_policy: str) -> None:
    """Open a shell on HOST, or run COMMAND in a terminal there: mssp ssh HOST [-- CMD].

    The session is recorded as asciicast v2 (output only: what you type, passwords included, is
    not written) and audited with the recording's SHA-256. The window size follows yours. The exit
    status is the remote one (255 when the connection was lost).
    """
    from mssp.sessions.hosts import resolve_host, session_connections
    from mssp.sessions.shell import interactive_shell
    from mssp.sessions.terminal import TerminalIO

    settings = cli.settings
    vault = open_vault(settings)  # asks for the passphrase before the terminal goes raw
    io = TerminalIO(term=os.environ.get("TERM") or "xterm-256color")
    line = " ".join(command) or None

    async def work() -> Any:
        record = await resolve_host(host)
        async with session_connections(settings, vault) as manager:
            note(f"connecting to {record.full_name} ({record.address})")
            return await interactive_shell(
                settings, manager, record, command=line, policy=recording_policy, io=io
            )

    result = run_with_database(settings, work)
    if result.recording_id is not None:
        note(
            f"session ended (status {result.exit_status}); recording {result.recording_id}: "
            f"{result.recording_path}"
        )
    else:
        note(f"session ended (status {result.exit_status}); not recorded")
    sys.exit(result.exit_status)


# ---- recordings --------------------------------------------------------------------------
@click.group("recordings")
def recordings_group() -> None:
    """Recorded interactive sessions: list them, play them back."""


@recordings_group.command("list")
@click.option("--host", "host_name", help="Only this host (client/site/host).")
@click.option("--client", help="Only this client (slug).")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@json_option
@pass_cli
def recordings_list(
    cli: CliContext, host_name: str | None, client: str | None, limit: int, as_json: bool
) -> None:
    """List recordings, newest first."""
    from mssp.sessions.recordings import list_recordings

    settings = cli.settings
    items = run_with_database(
        settings, lambda: list_recordings(host=host_name, client=client, limit=limit)
    )
    if as_json:
        emit_json([i.as_dict() for i in items])
        return
    rows = []
    for i in items:
        took = (i.ended_at - i.started_at).total_seconds() if i.ended_at else None
        rows.append(
            {
                "id": i.id,
                "started": i.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                "host": i.host,
                "kind": i.kind,
                "exit": "" if i.exit_status is None else i.exit_status,
                "state": i.state,
                "duration": "" if took is None else f"{took:.0f}s",
                "size": i.bytes,
                "actor": i.actor,
            }
        )
    print_table(
        rows, ["id", "started", "host", "kind", "exit", "state", "duration", "size", "actor"]
    )


@recordings_group.command("play")
@click.argument("recording_id", type=int)
@click.option(
    "--speed", type=click.FloatRange(min=0.01), default=1.0, show_default=True, help="x faster."
)
@click.option(
    "--max-idle",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Cap pauses at this many seconds (0: no pauses).",
)
@click.option(
    "--no-verify", is_flag=True, help="Play even if the file no longer has its recorded SHA-256."
)
@pass_cli
def recordings_play(
    cli: CliContext, recording_id: int, speed: float, max_idle: float, no_verify: bool
) -> None:
    """Play recording RECORDING_ID in this terminal (output as it was shown, in real time)."""
    from mssp import asciicast
    from mssp.sessions.recordings import get_recording, verify_file

    settings = cli.settings
    info = run_with_database(settings, lambda: get_recording(recording_id))
    with handle_errors():
        if not no_verify:
            verify_file(info)
        header, events = asciicast.read(Path(info.path))
        note(
            f"recording {info.id}: {info.host}, {info.started_at:%Y-%m-%d %H:%M} UTC, "
            f"{header.width}x{header.height}"
        )

        def write(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        asciicast.play(events, write, speed=speed, max_idle=max_idle)
    note("end of recording")


# ---- ps ------------------------------------------------------------------------------------
@click.command("ps")
@click.argument("host")
@_policy_option
@pass_cli
def ps_cmd(cli: CliContext, host: str, recording_policy: str) -> None:
    """A PowerShell prompt on Windows host HOST over WinRM (line by line; `exit` leaves).

    Output as it comes back, errors in red. Recorded (the prompt, the lines and the output) and
    audited like `mssp ssh`.
    """
    from mssp.sessions.hosts import resolve_host, session_connections
    from mssp.sessions.powershell import powershell_session, terminal_line_reader

    settings = cli.settings
    vault = open_vault(settings)
    color = sys.stdout.isatty()
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (line editing and history for input())

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    async def work() -> Any:
        record = await resolve_host(host)
        async with session_connections(settings, vault) as manager:
            return await powershell_session(
                settings,
                manager,
                record,
                read_line=terminal_line_reader(),
                write=write,
                color=color,
                policy=recording_policy,
                notice=note,
            )

    result = run_with_database(settings, work)
    if result.recording_id is not None:
        note(f"{result.commands} command(s); recording {result.recording_id}")
    sys.exit(result.exit_status)


def register(group: click.Group) -> None:
    for command in (
        ssh_cmd,
        ps_cmd,
        recordings_group,
    ):
        group.add_command(command)
