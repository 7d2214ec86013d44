"""`mssp ssh|ps|cp|collect|forward|rdp` and `mssp recordings list|play`: hands-on remote work.

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

from mssp.cli.common import CliContext, emit_json, handle_errors, json_option, pass_cli, print_table
from mssp.cli.init import open_vault, run_with_database
from mssp.errors import UsageError

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


def _note(message: str) -> None:
    click.echo(f"[mssp] {message}", err=True)


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
            _note(f"connecting to {record.full_name} ({record.address})")
            return await interactive_shell(
                settings, manager, record, command=line, policy=recording_policy, io=io
            )

    result = run_with_database(settings, work)
    if result.recording_id is not None:
        _note(
            f"session ended (status {result.exit_status}); recording {result.recording_id}: "
            f"{result.recording_path}"
        )
    else:
        _note(f"session ended (status {result.exit_status}); not recorded")
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
        _note(
            f"recording {info.id}: {info.host}, {info.started_at:%Y-%m-%d %H:%M} UTC, "
            f"{header.width}x{header.height}"
        )

        def write(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        asciicast.play(events, write, speed=speed, max_idle=max_idle)
    _note("end of recording")


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
                notice=_note,
            )

    result = run_with_database(settings, work)
    if result.recording_id is not None:
        _note(f"{result.commands} command(s); recording {result.recording_id}")
    sys.exit(result.exit_status)


# ---- cp and collect ------------------------------------------------------------------
@click.command("cp")
@click.argument("source")
@click.argument("dest")
@json_option
@pass_cli
def cp_cmd(cli: CliContext, source: str, dest: str, as_json: bool) -> None:
    """Copy one file to or from a host, verified by SHA-256 on both ends.

    \b
      mssp cp ./fix.conf acme/hq/fs01:/etc/app/fix.conf   (upload)
      mssp cp fs01:/var/log/syslog ./                     (download into a folder)

    HOST:PATH names a host (client/site/host, or a host name only one host has); a local path
    with a colon is written ./a:b. A mismatching hash fails the copy and replaces nothing.
    """
    from mssp.sessions.hosts import resolve_host, session_connections
    from mssp.sessions.transfer import copy, human_size, parse_endpoint

    settings = cli.settings
    with handle_errors():
        src, dst = parse_endpoint(source), parse_endpoint(dest)
    vault = open_vault(settings)

    async def work() -> Any:
        async with session_connections(settings, vault) as manager:
            return await copy(manager, resolve_host, src, dst)

    result = run_with_database(settings, work)
    if as_json:
        emit_json(result.__dict__)
        return
    arrow = f"{result.local_path} -> {result.host}:{result.remote_path}"
    if result.direction == "download":
        arrow = f"{result.host}:{result.remote_path} -> {result.local_path}"
    click.echo(f"{arrow}  {human_size(result.size)}  sha256 {result.sha256} (verified)")


@click.command("collect")
@click.argument("target")
@click.argument("remote_path")
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("collected"),
    show_default=True,
    help="Folder to fill: DEST/client/site/host/<file>.",
)
@click.option("--parallel", type=click.IntRange(1, 500), default=10, show_default=True)
@json_option
@pass_cli
def collect_cmd(
    cli: CliContext, target: str, remote_path: str, dest: Path, parallel: int, as_json: bool
) -> None:
    """Fetch REMOTE_PATH from every host TARGET selects, into a folder per host (verified).

    TARGET is a selection ('client:acme', 'tag:web & !db01', ...). Exit status: 0 all copied,
    4 some failed (hash mismatch, missing file, refused login), 5 some unreachable.
    """
    from mssp.inventory import select
    from mssp.sessions.hosts import session_connections
    from mssp.sessions.transfer import CollectItem, collect, collect_exit_code, human_size
    from mssp.store.inventory import load_hosts

    settings = cli.settings
    vault = open_vault(settings)

    def progress(item: CollectItem, done: int, total: int) -> None:
        if as_json:
            return
        detail = human_size(item.size) if item.state == "ok" else item.error
        click.echo(f"[{done}/{total}] {item.state:<11} {item.host}  {detail}", err=True)

    async def work() -> Any:
        hosts = select(target, await load_hosts())
        if not hosts:
            raise UsageError(f"{target!r} selects no host")
        async with session_connections(settings.replace(forks=parallel), vault) as manager:
            return await collect(manager, hosts, remote_path, dest, progress=progress)

    items = run_with_database(settings, work)
    code = collect_exit_code(items)
    if as_json:
        emit_json({"items": [i.__dict__ for i in items], "exit_code": code})
    else:
        ok = sum(1 for i in items if i.state == "ok")
        click.echo(f"{ok}/{len(items)} copied into {dest}")
    sys.exit(code)


# ---- forward and rdp ------------------------------------------------------------------
def _forward_options(func: Any) -> Any:
    for option in reversed(
        [
            click.option(
                "--local-port",
                type=click.IntRange(0, 65535),
                default=0,
                help="Local port (default: any free one).",
            ),
            click.option(
                "--bind", default="127.0.0.1", show_default=True, help="Local address to listen on."
            ),
            click.option(
                "--to",
                "target_host",
                help="Address as the far side sees it (SSH hosts: 127.0.0.1 on the "
                "host; Windows hosts: the host's address).",
            ),
        ]
    ):
        func = option(func)
    return func


@click.command("forward")
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
@_forward_options
@json_option
@pass_cli
def forward_cmd(
    cli: CliContext,
    host: str,
    port: int,
    local_port: int,
    bind: str,
    target_host: str | None,
    as_json: bool,
) -> None:
    """Forward a local port to PORT on HOST, through the path mssp uses for that host.

    SSH hosts: a channel over the host's SSH connection (direct or through the site's relay
    agent) to 127.0.0.1:PORT on the host. Windows hosts: through the site's agent, or directly.
    Prints the local address; runs until Ctrl-C. Opened and closed forwards are audited.
    """
    from mssp.sessions.forward import PortForward, stop_signals
    from mssp.sessions.hosts import resolve_host, session_connections
    from mssp.sessions.transfer import human_size

    settings = cli.settings
    vault = open_vault(settings)

    async def work() -> Any:
        record = await resolve_host(host)
        async with (
            session_connections(settings, vault) as manager,
            PortForward(
                manager,
                record,
                port,
                local_port=local_port,
                bind=bind,
                target_host=target_host,
                notice=_note,
            ) as fwd,
        ):
            info = fwd.describe()
            with stop_signals() as stop:
                if as_json:
                    emit_json(info)
                else:
                    click.echo(
                        f"{info['local']} -> {info['target']} on {record.full_name} "
                        f"(via {info['path']}); Ctrl-C stops"
                    )
                if not fwd.loopback_only:
                    _note(f"warning: listening on {bind}: reachable from other machines")
                sys.stdout.flush()
                await stop.wait()
            return fwd.stats

    stats = run_with_database(settings, work)
    _note(
        f"forward closed: {stats.connections} connection(s), {stats.refused} refused, "
        f"{human_size(stats.bytes_out)} out, {human_size(stats.bytes_in)} in"
    )


@click.command("rdp")
@click.argument("host")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=3389,
    show_default=True,
    help="RDP port on the host.",
)
@click.option(
    "--client",
    "client_name",
    help="RDP client program (default: first found of xfreerdp3, xfreerdp, wlfreerdp, mstsc).",
)
@click.option("--no-client", is_flag=True, help="Only forward and print how to connect.")
@_forward_options
@pass_cli
def rdp_cmd(
    cli: CliContext,
    host: str,
    port: int,
    client_name: str | None,
    no_client: bool,
    local_port: int,
    bind: str,
    target_host: str | None,
) -> None:
    """Remote desktop to HOST: forward its RDP port and start the local RDP client.

    Without an installed client (or with --no-client) prints how to connect and keeps the
    forward open until Ctrl-C. The forward closes when the client exits.
    """
    from mssp.sessions import rdp
    from mssp.sessions.hosts import resolve_host, session_connections

    settings = cli.settings
    vault = open_vault(settings)
    client = None if no_client else rdp.find_client(client_name)
    if client_name and client is None and not no_client:
        with handle_errors():
            raise UsageError(f"RDP client {client_name!r} not found on PATH")

    async def work() -> int:
        record = await resolve_host(host)
        async with session_connections(settings, vault) as manager:
            return await rdp.rdp_session(
                manager,
                record,
                port=port,
                client=client,
                local_port=local_port,
                bind=bind,
                target_host=target_host,
                notice=_note,
                show=click.echo,
            )

    status = run_with_database(settings, work)
    sys.exit(status)


def register(group: click.Group) -> None:
    for command in (
        ssh_cmd,
        ps_cmd,
        cp_cmd,
        collect_cmd,
        forward_cmd,
        rdp_cmd,
        recordings_group,
    ):
        group.add_command(command)
