"""`mssp lab relay up|down|status|kill`: the lab's relay and the relay-only site's agent."""

from __future__ import annotations

import dataclasses
import os

import click

from mssp.cli.common import CliContext, emit_json, handle_errors, json_option, pass_cli, run_async


@click.group("relay")
def lab_relay_group() -> None:
    """The lab's relay (root namespace) and the agent inside the relay-only site."""


@lab_relay_group.command("up")
@json_option
@pass_cli
def lab_relay_up(cli: CliContext, as_json: bool) -> None:
    """Start (or repair) the relay, the site's uplink and its agent; waits until it is online.

    Then the relay-only site's hosts work like any other: `mssp exec 'site:branch' -- hostname`.
    """
    from mssp.lab import relaylink

    with handle_errors():
        link = run_async(relaylink.up(cli.settings, os.environ))
    if as_json:
        emit_json(dataclasses.asdict(link))
        return
    click.echo(f"relay {link.url} (pin {link.pin}) up; agent of {link.site} online")
    click.echo(f"agent allowlist: {', '.join(link.allow)} port 22; uplink {link.veth}")


@lab_relay_group.command("down")
@json_option
@pass_cli
def lab_relay_down(cli: CliContext, as_json: bool) -> None:
    """Stop the lab's agent and relay and remove the uplink (the lab itself keeps running)."""
    from mssp.lab import relaylink

    with handle_errors():
        result = run_async(relaylink.down(cli.settings))
    if as_json:
        emit_json(result)
    else:
        click.echo("lab relay stopped" if result["stopped"] else "no lab relay was running")


@lab_relay_group.command("status")
@json_option
@pass_cli
def lab_relay_status(cli: CliContext, as_json: bool) -> None:
    """Whether the lab's relay and agent processes run, and where."""
    from mssp.lab import relaylink

    with handle_errors():
        data = relaylink.status(cli.settings)
    if as_json:
        emit_json(data)
        return
    if "site" not in data:
        click.echo("no lab relay")
        return
    for key in ("site", "url", "relay_alive", "agent_alive", "uplink", "allowlist"):
        click.echo(f"{key + ':':13} {data[key]}")


@lab_relay_group.command("kill")
@pass_cli
def lab_relay_kill(cli: CliContext) -> None:
    """SIGKILL the lab's relay (to watch runs and agents cope); `lab relay up` restarts it."""
    from mssp.lab import relaylink

    with handle_errors():
        relaylink.kill_relay(cli.settings)
    click.echo("lab relay killed")


def register(group: click.Group) -> None:
    lab = group.commands.get("lab")
    if isinstance(lab, click.Group):  # lab.py registers `lab` first (modules run sorted)
        lab.add_command(lab_relay_group)
