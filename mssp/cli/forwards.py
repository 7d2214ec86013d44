"""`mssp forward` and `mssp rdp`: a local port to a port on a host (its web UI, RDP), through
the path mssp uses for that host (direct or the relay); audited."""

from __future__ import annotations

import sys
from typing import Any

import click

from mssp.cli.common import CliContext, emit_json, handle_errors, json_option, note, pass_cli
from mssp.cli.init import open_vault, run_with_database
from mssp.errors import UsageError


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
                notice=note,
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
                    note(f"warning: listening on {bind}: reachable from other machines")
                sys.stdout.flush()
                await stop.wait()
            return fwd.stats

    stats = run_with_database(settings, work)
    note(
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
                notice=note,
                show=click.echo,
            )

    status = run_with_database(settings, work)
    sys.exit(status)


def register(group: click.Group) -> None:
    group.add_command(forward_cmd)
    group.add_command(rdp_cmd)
