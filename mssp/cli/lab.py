"""`mssp lab up|down|status`: the pocket MSP of real Linux hosts on this machine (needs root)."""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from typing import Any

import click

from mssp.cli.common import CliContext, emit_json, json_option, pass_cli, print_table, run_async
from mssp.config import Settings
from mssp.lab.state import HostState, LabState

HOST_COLUMNS = ["host", "address", "via", "tags", "state"]


def _say(message: str) -> None:
    click.echo(f"lab: {message}", err=True)


def _host_row(settings: Settings, state: LabState, h: HostState) -> dict[str, Any]:
    from mssp.lab.host import power_state
    from mssp.lab.state import lab_dir

    reach = {(s.client, s.slug): s.reach for s in state.sites}
    return {
        "host": h.full_name,
        "hostname": h.hostname,
        "address": h.address,
        "port": h.port,
        "via": reach.get((h.client, h.site), "direct"),
        "tags": ",".join(h.tags),
        "state": power_state(h, lab_dir(settings) / "hosts" / h.key),
        "host_key": h.host_key,
    }


def _lab_json(settings: Settings, state: LabState) -> dict[str, Any]:
    from mssp.lab.state import client_key_file

    return {
        "running": True,
        "mode": state.mode,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(state.created_at)),
        "started_seconds": state.started_seconds,
        "spec": state.spec,
        "registered": state.registered,
        "client_key_file": str(client_key_file(settings)),
        "client_public_key": state.client_public_key,
        "sites": [asdict(s) for s in state.sites],
        "hosts": [_host_row(settings, state, h) for h in state.hosts],
        "notes": state.notes,
    }


async def _up(settings: Settings, spec: Any, register: bool, reduced: bool) -> LabState:
    from mssp.lab import inventory as lab_inventory
    from mssp.lab import runtime
    from mssp.lab import state as lab_state
    from mssp.lab.keys import lab_keys

    state = await runtime.up(settings, spec, reduced=reduced, progress=_say)
    if not register:
        return state
    try:
        keys = lab_keys(settings)
        _say("writing clients, sites, hosts, credentials and host keys into the inventory")
        reg = await lab_inventory.register_lab(
            settings, state, private_key=keys.private_key, admin_password=keys.admin_password
        )
    except BaseException:
        _say("inventory registration failed: taking the lab down again")
        await runtime.down(settings)
        raise
    notes = list(state.notes)
    if reg.vault_key_file:
        notes.append(
            f"created the vault with a random passphrase in {reg.vault_key_file} "
            f"(use MSSP_VAULT_KEY_FILE={reg.vault_key_file} to unlock it unattended)"
        )
    state = replace(state, registered=True, notes=notes)
    lab_state.save(settings, state)
    return state


@click.group("lab")
def lab_group() -> None:
    """The lab: real Linux hosts (sshd in namespaces) in sites on this machine.

    Each site is a network namespace; each host an OpenSSH server in its own mount, UTS and PID
    namespaces over a throw-away overlay of /, so apt, useradd and restic really run and change
    nothing on the machine. Needs root.
    """


@lab_group.command("up")
@click.option("--sites", default=2, show_default=True, type=int, help="Sites in total.")
@click.option("--hosts-per-site", default=5, show_default=True, type=int, help="Hosts per site.")
@click.option(
    "--relay-only-site/--no-relay-only-site",
    default=True,
    show_default=True,
    help="Make the last site unreachable from here (only its relay agent will reach it).",
)
@click.option(
    "--register/--no-register",
    default=True,
    show_default=True,
    help="Write the lab into the inventory (clients lab-*, credentials, pinned host keys).",
)
@click.option(
    "--windows/--no-windows",
    default=False,
    show_default=True,
    help="Add a SIMULATED Windows host (WinRM endpoint with recorded replies) to a direct site.",
)
@click.option(
    "--reduced",
    is_flag=True,
    help="Without root: sshd processes on 127.77.x.x in this namespace (no isolation).",
)
@json_option
@pass_cli
def lab_up(
    cli: CliContext,
    sites: int,
    hosts_per_site: int,
    relay_only_site: bool,
    register: bool,
    windows: bool,
    reduced: bool,
    as_json: bool,
) -> None:
    """Start the lab and write it into the inventory."""
    from mssp.lab.layout import LabSpec

    spec = LabSpec(
        sites=sites,
        hosts_per_site=hosts_per_site,
        relay_only_site=relay_only_site and not reduced,
        windows_host=windows and not reduced,
    )
    spec.validate()
    state = run_async(_up(cli.settings, spec, register, reduced))
    if as_json:
        emit_json(_lab_json(cli.settings, state))
        return
    print_table([_host_row(cli.settings, state, h) for h in state.hosts], HOST_COLUMNS)
    click.echo(f"{len(state.hosts)} host(s) in {len(state.sites)} site(s) up in "
               f"{state.started_seconds:.1f} s")  # fmt: skip
    for note in state.notes:
        click.echo(f"note: {note}")


@lab_group.command("down")
@click.option(
    "--keep-inventory", is_flag=True, help="Leave the lab's clients, hosts and credentials."
)
@click.option(
    "--force",
    is_flag=True,
    help="Also remove a lab on this machine that another MSSP_HOME recorded and still owns.",
)
@json_option
@pass_cli
def lab_down(cli: CliContext, keep_inventory: bool, force: bool, as_json: bool) -> None:
    """Stop every lab host and remove every namespace, veth, mount and process the lab made.

    Also sweeps lab leftovers (namespaces mssp-lab-*, links mssplab*, base-layer mounts) of a lab
    whose record was lost. A lab recorded in another MSSP_HOME is left alone unless --force. By
    default the lab's clients (lab-*) are removed from the inventory too.
    """
    from mssp.lab import inventory as lab_inventory
    from mssp.lab import runtime
    from mssp.lab.state import load

    async def body() -> dict[str, Any]:
        state = load(cli.settings)
        removed = 0
        if state is not None and state.registered and not keep_inventory:
            removed = await lab_inventory.unregister_lab(cli.settings, state)
        started = time.monotonic()
        notes = await runtime.down(cli.settings, force=force, progress=_say)
        return {
            "was_running": state is not None,
            "hosts_stopped": len(state.hosts) if state else 0,
            "clients_removed": removed,
            "seconds": round(time.monotonic() - started, 3),
            "notes": notes,
        }

    result = run_async(body())
    if as_json:
        emit_json(result)
        return
    if result["was_running"]:
        click.echo(f"lab down: {result['hosts_stopped']} host(s) stopped in "
                   f"{result['seconds']:.1f} s, {result['clients_removed']} client(s) removed "
                   "from the inventory")  # fmt: skip
    else:
        click.echo("no lab was recorded here; lab leftovers without an owner (if any) were swept")
    for note in result["notes"]:
        click.echo(f"note: {note}")


@lab_group.command("status")
@json_option
@pass_cli
def lab_status(cli: CliContext, as_json: bool) -> None:
    """Show the lab's sites and hosts and whether each host is running."""
    from mssp.lab.state import load

    state = load(cli.settings)
    if state is None:
        if as_json:
            emit_json({"running": False, "hosts": [], "sites": []})
        else:
            click.echo("no lab is running (start one with `mssp lab up`)")
        return
    if as_json:
        emit_json(_lab_json(cli.settings, state))
        return
    rows = [_host_row(cli.settings, state, h) for h in state.hosts]
    print_table(rows, HOST_COLUMNS)
    up = sum(1 for r in rows if r["state"] == "up")
    click.echo(f"{up}/{len(rows)} host(s) up in {len(state.sites)} site(s) "
               f"({state.mode}; started in {state.started_seconds:.1f} s)")  # fmt: skip
    for note in state.notes:
        click.echo(f"note: {note}")


def register(group: click.Group) -> None:
    group.add_command(lab_group)
