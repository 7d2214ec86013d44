"""`mssp schedule ...` (cron schedules the daemon runs) and `mssp daemon` (the daemon itself)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from mssp import audit
from mssp.cli.common import CliContext, emit_json, handle_errors, json_option, pass_cli, print_table
from mssp.cli.init import run_with_database
from mssp.errors import UsageError


def _params(pairs: tuple[str, ...]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            with handle_errors():
                raise UsageError(f"--param wants KEY=VALUE, not {pair!r}")
        params[key.strip()] = value
    return params


def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else "-"


@click.group("schedule")
def schedule_group() -> None:
    """Cron schedules: tasks `mssp daemon` runs on its own (nightly backup checks...)."""


@schedule_group.command("add")
@click.argument("name")
@click.option("--cron", "cron_text", required=True, help="Cron expression, e.g. '30 2 * * *'.")
@click.option("--task", required=True, help="Task to run, e.g. backup.verify.")
@click.option("--target", required=True, help="Target expression, e.g. 'tag:backed-up'.")
@click.option(
    "--timezone",
    default=None,
    help="IANA zone the cron is read in (default: the client's zone when the target is one "
    "client's hosts, else UTC).",
)
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Task parameter.")
@click.option("--timeout", default=None, help="Per-host timeout of each run (e.g. 2h).")
@json_option
@pass_cli
def schedule_add(
    cli: CliContext,
    name: str,
    cron_text: str,
    task: str,
    target: str,
    timezone: str | None,
    params: tuple[str, ...],
    timeout: str | None,
    as_json: bool,
) -> None:
    """Add a schedule NAME. Everything is checked first; nothing is stored on an error."""
    from mssp.engine import RunOptions, parse_duration
    from mssp.scheduler import add_schedule
    from mssp.tasks import get_task

    raw = _params(params)

    async def work() -> Any:
        validated = get_task(task)(raw).params
        detail = {"cron": cron_text, "task": task, "target": target, "params": sorted(raw)}
        async with audit.action("schedule.add", target=name, detail=detail):
            return await add_schedule(
                name,
                cron_text=cron_text,
                task=task,
                target=target,
                params={k: validated[k] for k in raw},
                timezone=timezone,
                options=RunOptions(
                    timeout=parse_duration(timeout, "--timeout") if timeout else None
                ),
            )

    info = run_with_database(cli.settings, work)
    if as_json:
        emit_json(info.to_json())
        return
    click.echo(
        f"schedule {info.name}: {info.task} on {info.target!r} at '{info.cron}' "
        f"({info.timezone}); next run {_when(info.next_run)}"
    )


@schedule_group.command("list")
@json_option
@pass_cli
def schedule_list(cli: CliContext, as_json: bool) -> None:
    """List schedules with their next and last runs."""
    from mssp.scheduler import list_schedules

    infos = run_with_database(cli.settings, list_schedules)
    if as_json:
        emit_json([i.to_json() for i in infos])
        return
    rows = [
        {
            "name": i.name,
            "cron": i.cron,
            "tz": i.timezone,
            "task": i.task,
            "target": i.target,
            "state": "running" if i.running else ("enabled" if i.enabled else "disabled"),
            "next": _when(i.next_run),
            "last run": (
                f"{i.last_run_id}{' (late)' if i.last_late else ''}" if i.last_run_id else "-"
            ),
            "error": i.last_error[:40],
        }
        for i in infos
    ]
    print_table(
        rows, ["name", "cron", "tz", "task", "target", "state", "next", "last run", "error"]
    )


def _toggle(cli: CliContext, name: str, enabled: bool, as_json: bool) -> None:
    from mssp.scheduler import set_enabled

    async def work() -> Any:
        action = "schedule.enable" if enabled else "schedule.disable"
        async with audit.action(action, target=name):
            return await set_enabled(name, enabled)

    info = run_with_database(cli.settings, work)
    if as_json:
        emit_json(info.to_json())
    else:
        click.echo(f"schedule {name} {'enabled' if enabled else 'disabled'}")


@schedule_group.command("enable")
@click.argument("name")
@json_option
@pass_cli
def schedule_enable(cli: CliContext, name: str, as_json: bool) -> None:
    """Enable a schedule (times passed while it was disabled are not run)."""
    _toggle(cli, name, True, as_json)


@schedule_group.command("disable")
@click.argument("name")
@json_option
@pass_cli
def schedule_disable(cli: CliContext, name: str, as_json: bool) -> None:
    """Disable a schedule (a run in flight goes on)."""
    _toggle(cli, name, False, as_json)


@schedule_group.command("remove")
@click.argument("name")
@json_option
@pass_cli
def schedule_remove(cli: CliContext, name: str, as_json: bool) -> None:
    """Remove a schedule."""
    from mssp.scheduler import remove_schedule

    async def work() -> None:
        async with audit.action("schedule.remove", target=name):
            await remove_schedule(name)

    run_with_database(cli.settings, work)
    if as_json:
        emit_json({"removed": name})
    else:
        click.echo(f"schedule {name} removed")


@click.command("daemon")
@click.option("--poll", default=30.0, show_default=True, help="Longest sleep between ticks (s).")
@click.option(
    "--agent-offline-after",
    default="15m",
    show_default=True,
    help="Notify when a site agent is offline this long.",
)
@click.option(
    "--install-unit",
    is_flag=True,
    help="Write ~/.config/systemd/user/mssp-daemon.service and exit.",
)
@pass_cli
def daemon_cmd(cli: CliContext, poll: float, agent_offline_after: str, install_unit: bool) -> None:
    """Run due schedules through the engine and send notifications, in the foreground.

    While it runs, `mssp exec` and `mssp run` hand their runs to it (no start-up cost, its open
    connections; only this user can, through a 0600 socket in the home). Stops cleanly on Ctrl-C
    or SIGTERM: runs still going are cancelled with their states recorded.

    Unattended use needs the vault unlocked without a prompt: MSSP_VAULT_PASSPHRASE or
    settings.vault_key_file (see `mssp init`).
    """
    from datetime import timedelta

    from mssp.daemon import DaemonOptions, serve
    from mssp.daemon import install_unit as write_unit
    from mssp.engine import parse_duration

    settings = cli.settings
    with handle_errors():
        offline = timedelta(seconds=parse_duration(agent_offline_after, "--agent-offline-after"))
        if poll <= 0:
            raise UsageError("--poll must be positive")
    if install_unit:
        path = Path.home() / ".config" / "systemd" / "user" / "mssp-daemon.service"
        executable = str(Path(sys.executable).with_name("mssp"))
        write_unit(path, executable, os.environ.get("MSSP_HOME"), poll)
        click.echo(f"wrote {path}")
        if settings.vault_key_file is None:
            click.echo(
                "note: no vault_key_file in the settings: the service cannot unlock the vault "
                "without a prompt",
                err=True,
            )
        click.echo(
            "start it: systemctl --user daemon-reload && systemctl --user enable --now "
            "mssp-daemon   (and `loginctl enable-linger` to run without a login)"
        )
        return
    from mssp.cli.init import open_vault

    if not settings.is_postgres and not settings.db_path.exists():
        with handle_errors():
            raise UsageError(f"no database at {settings.db_path}; run `mssp init` first")
    vault = open_vault(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        click.echo("mssp daemon running; Ctrl-C stops it", err=True)
        await serve(
            settings, vault, stop, options=DaemonOptions(poll=poll, agent_offline_after=offline)
        )

    with handle_errors():
        asyncio.run(main())
    click.echo("mssp daemon stopped", err=True)


def register(group: click.Group) -> None:
    group.add_command(schedule_group)
    group.add_command(daemon_cmd)
