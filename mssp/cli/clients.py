"""`mssp client|site|host ...` inventory commands and `mssp hosts EXPR`, the selection preview."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from mssp.cli.common import CliContext, emit_json, handle_errors, json_option, pass_cli, print_table
from mssp.cli.init import run_with_database
from mssp.errors import UsageError
from mssp.inventory import HostRecord, select
from mssp.store import inventory as inv
from mssp.store.hostkeys import DbHostKeyStore
from mssp.store.names import REACHES, slugify, split_full_name

yes_option = click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
force_option = click.option("--force", is_flag=True, help="Also remove everything inside it.")


def host_json(record: HostRecord) -> dict[str, Any]:
    return {
        "full_name": record.full_name,
        "client": record.client,
        "site": record.site,
        "name": record.name,
        "address": record.address,
        "port": record.port,
        "username": record.username,
        "transport": record.transport,
        "via": record.via,
        "tags": sorted(record.tags),
        "options": dict(record.options),
        "os_family": record.os_family,
        "credential_id": record.credential_id,
        "become_credential_id": record.become_credential_id,
        "id": record.id,
    }


def _host_row(record: HostRecord) -> dict[str, Any]:
    return {
        "host": record.full_name,
        "address": record.address,
        "port": record.port,
        "user": record.username,
        "transport": record.transport,
        "via": record.via,
        "tags": ",".join(sorted(record.tags)),
    }


HOST_COLUMNS = ["host", "address", "port", "user", "transport", "via", "tags"]


def _confirm(message: str, yes: bool) -> None:
    if not yes:
        click.confirm(message, abort=True, err=True)


def _options(pairs: tuple[str, ...]) -> dict[str, str]:
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            with handle_errors():
                raise UsageError(f"--option expects KEY=VALUE, got {pair!r}")
        result[key.strip()] = value.strip()
    return result


# ---------------------------------------------------------------- clients


@click.group("client")
def client_group() -> None:
    """Clients: the businesses you look after."""


@client_group.command("add")
@click.argument("name")
@click.option("--slug", help="Short name used in commands (default: derived from NAME).")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone of the client.")
@click.option("--notes", default="", help="Free text.")
@json_option
@pass_cli
def client_add(
    cli: CliContext, name: str, slug: str | None, timezone: str, notes: str, as_json: bool
) -> None:
    """Add a client. `mssp client add "Acme Dental" --timezone Europe/Berlin` makes acme-dental."""
    slug = slug or slugify(name)
    info = run_with_database(
        cli.settings, lambda: inv.create_client(slug, name, timezone=timezone, notes=notes)
    )
    if as_json:
        emit_json(dataclasses.asdict(info))
    else:
        click.echo(f"client {info.slug} ({info.name}, {info.timezone}) added")


@client_group.command("list")
@json_option
@pass_cli
def client_list(cli: CliContext, as_json: bool) -> None:
    """List clients with their number of sites and hosts."""
    infos = run_with_database(cli.settings, inv.list_clients)
    if as_json:
        emit_json([dataclasses.asdict(i) for i in infos])
        return
    print_table(
        [dataclasses.asdict(i) for i in infos], ["slug", "name", "timezone", "sites", "hosts"]
    )


@client_group.command("show")
@click.argument("slug")
@json_option
@pass_cli
def client_show(cli: CliContext, slug: str, as_json: bool) -> None:
    """Show one client and its sites."""

    async def work() -> tuple[inv.ClientInfo, list[inv.SiteInfo]]:
        return await inv.get_client(slug), await inv.list_sites(slug)

    info, sites = run_with_database(cli.settings, work)
    if as_json:
        emit_json({**dataclasses.asdict(info), "site_list": [dataclasses.asdict(s) for s in sites]})
        return
    for key in ("slug", "name", "timezone", "sites", "hosts", "notes"):
        click.echo(f"{key + ':':10} {getattr(info, key)}")
    print_table([dataclasses.asdict(s) for s in sites], ["slug", "name", "reach", "hosts"])


@client_group.command("remove")
@click.argument("slug")
@force_option
@yes_option
@json_option
@pass_cli
def client_remove(cli: CliContext, slug: str, force: bool, yes: bool, as_json: bool) -> None:
    """Remove a client (with --force: its sites, hosts and credentials too)."""
    _confirm(f"Remove client {slug}{' and everything in it' if force else ''}?", yes)
    summary = run_with_database(cli.settings, lambda: inv.remove_client(slug, force=force))
    _removed(summary, as_json)


def _removed(summary: inv.RemovalSummary, as_json: bool) -> None:
    if as_json:
        emit_json(dataclasses.asdict(summary))
        return
    parts = [f"{n} {k}" for k, n in dataclasses.asdict(summary).items() if n]
    click.echo("removed " + ", ".join(parts))


# ---------------------------------------------------------------- sites


@click.group("site")
def site_group() -> None:
    """Sites: a client's locations or networks."""


@site_group.command("add")
@click.argument("full_name", metavar="CLIENT/SITE")
@click.option("--name", default="", help="Display name (default: the site slug).")
@click.option(
    "--reach",
    type=click.Choice(REACHES),
    default="direct",
    show_default=True,
    help="How hosts here are reached: directly, or through the site's relay agent.",
)
@json_option
@pass_cli
def site_add(cli: CliContext, full_name: str, name: str, reach: str, as_json: bool) -> None:
    """Add a site to a client: `mssp site add acme-dental/main-office`."""
    with handle_errors():
        client_slug, site_slug = split_full_name(full_name, 2)
    info = run_with_database(
        cli.settings, lambda: inv.create_site(client_slug, site_slug, name, reach=reach)
    )
    if as_json:
        emit_json(dataclasses.asdict(info))
    else:
        click.echo(f"site {info.full_name} added (reach: {info.reach})")


@site_group.command("list")
@click.argument("client", required=False)
@json_option
@pass_cli
def site_list(cli: CliContext, client: str | None, as_json: bool) -> None:
    """List sites, of every client or of one; relayed sites with their agent's presence."""
    from mssp.cli.sites import presence_for_listing

    async def work() -> tuple[list[inv.SiteInfo], dict[str, Any], str]:
        infos = await inv.list_sites(client)
        agents, source, _ = await presence_for_listing(cli.settings)
        return infos, agents, source

    infos, agents, source = run_with_database(cli.settings, work)
    rows = [{**dataclasses.asdict(i), "site": i.full_name} for i in infos]
    if as_json:
        from mssp.connectors.relay_ops import agent_json

        emit_json([{**r, **agent_json(agents.get(r["site"]), source)} for r in rows])
        return
    for row in rows:
        agent = agents.get(row["site"])
        row["agent"] = agent.status if agent is not None else "-"
    print_table(rows, ["site", "name", "reach", "hosts", "agent"])


@site_group.command("remove")
@click.argument("full_name", metavar="CLIENT/SITE")
@force_option
@yes_option
@json_option
@pass_cli
def site_remove(cli: CliContext, full_name: str, force: bool, yes: bool, as_json: bool) -> None:
    """Remove a site (with --force: its hosts too)."""
    _confirm(f"Remove site {full_name}{' and its hosts' if force else ''}?", yes)
    summary = run_with_database(cli.settings, lambda: inv.remove_site(full_name, force=force))
    _removed(summary, as_json)


# ---------------------------------------------------------------- hosts


@click.group("host")
def host_group() -> None:
    """Hosts: servers and workstations of a site."""


@host_group.command("add")
@click.argument("full_name", metavar="CLIENT/SITE/HOST")
@click.option("--address", help="DNS name or IP address (default: the host name).")
@click.option("--port", type=int, help="Port (default: 22 for ssh, 5986 for winrm).")
@click.option("--user", "username", default="root", show_default=True, help="Login user.")
@click.option("--transport", type=click.Choice(["ssh", "winrm"]), default="ssh", show_default=True)
@click.option(
    "--via",
    type=click.Choice(["site", "direct", "relay"]),
    default="site",
    show_default=True,
    help="Path to the host; 'site' follows the site's reach.",
)
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option("--credential", help="Login credential: NAME (the client's, else global).")
@click.option("--become-credential", help="Password for sudo / elevation.")
@click.option("--option", "options", multiple=True, help="Transport option KEY=VALUE.")
@json_option
@pass_cli
def host_add(
    cli: CliContext,
    full_name: str,
    address: str | None,
    port: int | None,
    username: str,
    transport: str,
    via: str,
    tags: tuple[str, ...],
    credential: str | None,
    become_credential: str | None,
    options: tuple[str, ...],
    as_json: bool,
) -> None:
    """Add a host: `mssp host add acme-dental/main-office/fs01 --address 192.0.2.10`."""
    with handle_errors():
        client_slug, site_slug, name = split_full_name(full_name, 3)
    opts = _options(options)
    record = run_with_database(
        cli.settings,
        lambda: inv.create_host(
            client_slug,
            site_slug,
            name,
            address=address or name,
            port=port if port is not None else (5986 if transport == "winrm" else 22),
            username=username,
            transport=transport,
            via=via,
            tags=tags,
            credential=credential,
            become_credential=become_credential,
            options=opts,
        ),
    )
    if as_json:
        emit_json(host_json(record))
    else:
        click.echo(f"host {record.full_name} added ({record.address}:{record.port})")


@host_group.command("list")
@click.option("--client", help="Only hosts of this client.")
@click.option("--site", help="Only hosts of this site (CLIENT/SITE or SITE).")
@json_option
@pass_cli
def host_list(cli: CliContext, client: str | None, site: str | None, as_json: bool) -> None:
    """List hosts (for target expressions, see `mssp hosts EXPR`)."""
    records = run_with_database(cli.settings, inv.load_hosts)
    if client:
        records = [r for r in records if r.client == client]
    if site:
        records = [r for r in records if site in (r.site, f"{r.client}/{r.site}")]
    if as_json:
        emit_json([host_json(r) for r in records])
        return
    print_table([_host_row(r) for r in records], HOST_COLUMNS)


@host_group.command("show")
@click.argument("full_name", metavar="CLIENT/SITE/HOST")
@json_option
@pass_cli
def host_show(cli: CliContext, full_name: str, as_json: bool) -> None:
    """Show one host: its settings, credentials (names only) and pinned host keys."""

    async def work() -> dict[str, Any]:
        record = await inv.get_host(full_name)
        names = await inv.credential_names(record)
        keys = await DbHostKeyStore().keys(record)
        return {
            **host_json(record),
            "credential": names["credential"],
            "become_credential": names["become"],
            "host_keys": [dataclasses.asdict(k) for k in keys],
        }

    data = run_with_database(cli.settings, work)
    if as_json:
        emit_json(data)
        return
    for key in ("full_name", "address", "port", "username", "transport", "via", "tags"):
        value = data[key]
        click.echo(f"{key + ':':20} {','.join(value) if isinstance(value, list) else value}")
    click.echo(f"{'credential:':20} {data['credential'] or '(default)'}")
    click.echo(f"{'become credential:':20} {data['become_credential'] or '-'}")
    for key, value in sorted(data["options"].items()):
        click.echo(f"{'option ' + key + ':':20} {value}")
    for key in data["host_keys"]:
        kind = "host CA" if key["is_ca"] else "host key"
        click.echo(f"{kind + ':':20} {key['algorithm']} {key['fingerprint']}")


@host_group.command("set")
@click.argument("full_name", metavar="CLIENT/SITE/HOST")
@click.option("--address")
@click.option("--port", type=int)
@click.option("--user", "username")
@click.option("--transport", type=click.Choice(["ssh", "winrm"]))
@click.option("--via", type=click.Choice(["site", "direct", "relay"]))
@click.option("--tag", "add_tags", multiple=True, help="Add a tag (repeatable).")
@click.option("--untag", "remove_tags", multiple=True, help="Remove a tag (repeatable).")
@click.option("--credential", help="Login credential name.")
@click.option("--no-credential", is_flag=True, help="Use the default credential again.")
@click.option("--become-credential")
@click.option("--no-become-credential", is_flag=True)
@click.option("--option", "options", multiple=True, help="Set transport option KEY=VALUE.")
@click.option("--unset-option", "remove_options", multiple=True, help="Remove a transport option.")
@click.option("--forget-host-keys", is_flag=True, help="Drop pinned host keys (after a reinstall).")
@json_option
@pass_cli
def host_set(
    cli: CliContext, full_name: str, forget_host_keys: bool, as_json: bool, **kw: Any
) -> None:
    """Change a host's settings; options not given keep their value."""
    opts = _options(kw.pop("options"))
    clear_credential = kw.pop("no_credential")
    clear_become = kw.pop("no_become_credential")
    if (clear_credential and kw["credential"]) or (clear_become and kw["become_credential"]):
        with handle_errors():
            raise UsageError("give a credential or --no-credential, not both")

    async def work() -> HostRecord:
        record = await inv.update_host(
            full_name,
            options=opts,
            clear_credential=clear_credential,
            clear_become_credential=clear_become,
            **kw,
        )
        if forget_host_keys:
            await DbHostKeyStore().forget(record)
        return record

    record = run_with_database(cli.settings, work)
    if as_json:
        emit_json(host_json(record))
    else:
        click.echo(f"host {record.full_name} updated")


@host_group.command("remove")
@click.argument("full_name", metavar="CLIENT/SITE/HOST")
@yes_option
@json_option
@pass_cli
def host_remove(cli: CliContext, full_name: str, yes: bool, as_json: bool) -> None:
    """Remove a host (and its pinned host keys and facts)."""
    _confirm(f"Remove host {full_name}?", yes)
    _removed(run_with_database(cli.settings, lambda: inv.remove_host(full_name)), as_json)


@click.command("hosts")
@click.argument("expression", default="all")
@json_option
@pass_cli
def hosts_cmd(cli: CliContext, expression: str, as_json: bool) -> None:
    """Preview which hosts a target EXPRESSION selects.

    \b
    ,  union            client:acme,tag:web
    &  intersection     tag:web&site:main-office
    !  exclusion        tag:web,!db*
    client:GLOB site:GLOB tag:GLOB, or a glob on host names / client/site/host.
    """
    records = run_with_database(cli.settings, inv.load_hosts)
    with handle_errors():
        chosen = select(expression, records)
    if as_json:
        emit_json([host_json(r) for r in chosen])
        return
    print_table([_host_row(r) for r in chosen], HOST_COLUMNS)
    click.echo(f"{len(chosen)} of {len(records)} hosts", err=True)


def register(group: click.Group) -> None:
    for command in (client_group, site_group, host_group, hosts_cmd):
        group.add_command(command)
