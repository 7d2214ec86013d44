"""`mssp cp` and `mssp collect`: files to and from hosts, verified by SHA-256 on both ends and
audited. HOST is a full name (client/site/host) or a host name only one host has."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from mssp.cli.common import CliContext, emit_json, handle_errors, json_option, pass_cli
from mssp.cli.init import open_vault, run_with_database
from mssp.errors import UsageError


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


def register(group: click.Group) -> None:
    group.add_command(cp_cmd)
    group.add_command(collect_cmd)
