"""`mssp site enroll|revoke|agents`: a relayed site's agent (added to clients.py's `site` group)."""

from __future__ import annotations

from typing import Any

import click

from mssp.cli.common import CliContext, emit_json, json_option, pass_cli, print_table
from mssp.cli.init import open_vault, run_with_database


@click.command("enroll")
@click.argument("full_name", metavar="CLIENT/SITE")
@click.option(
    "--ttl",
    type=click.IntRange(60, 86400),
    default=1800,
    show_default=True,
    help="Seconds the token stays valid.",
)
@json_option
@pass_cli
def site_enroll(cli: CliContext, full_name: str, ttl: int, as_json: bool) -> None:
    """Make a single-use join token for the site's agent (shown once, never stored).

    \b
    At the site:  mssp-agent join - --network 192.168.1.0/24 < token.txt
                  mssp-agent run
    Enrolling again replaces the site's previous agent.
    """
    settings = cli.settings
    vault = open_vault(settings)

    async def work() -> Any:
        from mssp.connectors import relay_ops
        from mssp.connectors.relay import RelayPaths

        paths = RelayPaths(settings, vault)
        try:
            return await relay_ops.enroll(paths, full_name, ttl=ttl)
        finally:
            await paths.aclose()

    enrolment = run_with_database(settings, work)
    if as_json:
        emit_json(
            {
                "site": enrolment.site,
                "relay_site_id": enrolment.relay_site_id,
                "token": enrolment.token,
                "expires_at": enrolment.expires_at,
                "relay_url": enrolment.relay_url,
            }
        )
        return
    click.echo(
        f"Join token for {enrolment.site} "
        f"(single use, expires {enrolment.expires_at:%Y-%m-%d %H:%M} UTC):",
        err=True,
    )
    click.echo(enrolment.token)
    click.echo(
        "At the site, as root: save it to a file, then\n"
        "  mssp-agent join - --network <LAN CIDR> < token.txt && mssp-agent run",
        err=True,
    )


@click.command("revoke")
@click.argument("full_name", metavar="CLIENT/SITE")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_cli
def site_revoke(cli: CliContext, full_name: str, yes: bool, as_json: bool) -> None:
    """Cut the site's live agent now and refuse it from then on (enrol again to replace it)."""
    if not yes:
        click.confirm(f"Revoke the agent of {full_name}?", abort=True, err=True)
    settings = cli.settings
    vault = open_vault(settings)

    async def work() -> Any:
        from mssp.connectors import relay_ops
        from mssp.connectors.relay import RelayPaths

        paths = RelayPaths(settings, vault)
        try:
            return await relay_ops.revoke(paths, full_name)
        finally:
            await paths.aclose()

    record = run_with_database(settings, work)
    if as_json:
        emit_json({"site": record.full_name, "revoked_at": record.revoked_at})
    else:
        click.echo(f"agent of {record.full_name} revoked at {record.revoked_at:%H:%M:%S} UTC")


def _ago(value: Any) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


@click.command("agents")
@click.option("--stored", is_flag=True, help="Show the last stored presence; do not ask the relay.")
@json_option
@pass_cli
def site_agents(cli: CliContext, stored: bool, as_json: bool) -> None:
    """Enrolled agents: online/offline, since when, last heartbeat, round-trip time."""
    settings = cli.settings
    vault = None if stored else open_vault(settings)

    async def work() -> Any:
        from mssp.connectors import relay_ops

        return await relay_ops.agents_with_presence(settings, vault, live=not stored)

    records, source, problem = run_with_database(settings, work)
    from mssp.connectors.relay_ops import agent_json

    rows = [{"site": name, **agent_json(r, source)["agent"]} for name, r in sorted(records.items())]
    if as_json:
        emit_json({"source": source, "problem": problem, "agents": rows})
        return
    if problem:
        click.echo(f"relay not asked ({problem}); showing the last stored presence", err=True)
    print_table(
        [
            {
                "site": r["site"],
                "status": r["status"],
                "since": _ago(r["since"]),
                "last_seen": _ago(r["last_seen"]),
                "rtt_ms": "-" if r["rtt_ms"] is None else f"{r['rtt_ms']:.1f}",
            }
            for r in rows
        ],
        ["site", "status", "since", "last_seen", "rtt_ms"],
    )


async def presence_for_listing(settings: Any) -> tuple[dict[str, Any], str, str | None]:
    """Agent fields per site for `mssp site list`: live when the vault opens without a prompt."""
    from mssp.connectors import relay_ops, relay_store
    from mssp.errors import VaultError
    from mssp.vault import unlock_from_settings

    if not await relay_store.list_agents():
        return {}, "stored", None  # no agent anywhere: neither the vault nor the relay is needed
    vault = None
    try:
        vault = unlock_from_settings(settings)  # never prompts: a listing must not ask
    except VaultError:
        vault = None
    return await relay_ops.agents_with_presence(settings, vault, live=vault is not None)


def register(group: click.Group) -> None:
    site = group.commands.get("site")
    if not isinstance(site, click.Group):  # clients.py registers it first (modules run sorted)
        raise RuntimeError("the `site` command group is missing")
    for command in (site_enroll, site_revoke, site_agents):
        site.add_command(command)
