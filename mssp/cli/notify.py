"""`mssp notify add|list|remove|test`: Apprise notification URLs, kept in the vault.

An Apprise URL often embeds a token or password (``json://host/hook/TOKEN``,
``mailto://user:pass@...``), so it is never a command-line argument: it is prompted (hidden) or
read from stdin, stored encrypted as a credential of kind "notify-url", and never printed.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from mssp.cli.common import CliContext, emit_json, handle_errors, json_option, pass_cli, print_table
from mssp.cli.init import open_vault, run_with_database
from mssp.errors import UsageError

KIND = "notify-url"


def _read_url(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        url = sys.stdin.readline().strip()
    else:
        url = click.prompt("Apprise URL (not shown)", hide_input=True, err=True).strip()
    with handle_errors():
        if not url or "://" not in url:
            raise UsageError("an Apprise URL looks like scheme://... (e.g. json://host/path)")
        import apprise

        from mssp.notify import _silence_apprise

        _silence_apprise()
        if not apprise.Apprise().add(url):
            raise UsageError("Apprise does not accept this URL (not shown)")
    return url


@click.group("notify")
def notify_group() -> None:
    """Where notifications go: Apprise URLs, global or per client."""


@notify_group.command("add")
@click.option("--name", required=True, help="A name for this target (e.g. ops-mail).")
@click.option("--client", default=None, help="Only this client's notifications.")
@click.option("--url-stdin", is_flag=True, help="Read the URL from stdin instead of a prompt.")
@json_option
@pass_cli
def notify_add(
    cli: CliContext, name: str, client: str | None, url_stdin: bool, as_json: bool
) -> None:
    """Add a notification target; the Apprise URL is prompted or read from stdin."""
    from mssp.store.credentials import add_credential

    url = _read_url(url_stdin)
    vault = open_vault(cli.settings)
    run_with_database(
        cli.settings,
        lambda: add_credential(vault, client_slug=client, name=name, kind=KIND, secret=url),
    )
    if as_json:
        emit_json({"name": name, "client": client})
    else:
        click.echo(f"notification target {name} added" + (f" for {client}" if client else ""))


async def _targets() -> list[dict[str, Any]]:
    from mssp.store.credentials import list_credentials

    return [
        {"name": c.name, "client": c.client or "(all)", "added": f"{c.created_at:%Y-%m-%d}"}
        for c in await list_credentials()
        if c.kind == KIND
    ]


@notify_group.command("list")
@json_option
@pass_cli
def notify_list(cli: CliContext, as_json: bool) -> None:
    """List notification targets (names and clients; never their URLs)."""
    rows = run_with_database(cli.settings, _targets)
    if as_json:
        emit_json(rows)
    else:
        print_table(rows, ["name", "client", "added"])


@notify_group.command("remove")
@click.argument("name")
@click.option("--client", default=None, help="The client the target belongs to.")
@pass_cli
def notify_remove(cli: CliContext, name: str, client: str | None) -> None:
    """Remove a notification target."""
    from mssp.store.credentials import find_credential, remove_credential

    ref = f"{client}/{name}" if client else name

    async def work() -> None:
        row = await find_credential(ref)
        if row.kind != KIND:
            raise UsageError(f"{ref!r} is a {row.kind} credential, not a notification target")
        await remove_credential(ref)

    run_with_database(cli.settings, work)
    click.echo(f"notification target {ref} removed")


@notify_group.command("test")
@click.option("--client", default=None, help="Send as this client's notification.")
@json_option
@pass_cli
def notify_test(cli: CliContext, client: str | None, as_json: bool) -> None:
    """Send a test message to every target that would receive CLIENT's (or global) messages."""
    from mssp.daemon import notify_targets
    from mssp.notify import AppriseSender

    vault = open_vault(cli.settings)

    async def work() -> Any:
        targets = await notify_targets(vault)
        urls = [t.url.reveal() for t in targets if t.client is None or t.client == client]
        if not urls:
            raise UsageError("no notification target would receive this message")
        return await AppriseSender().send(
            urls, "mssp test", f"test message from mssp ({client or 'global'})"
        )

    delivery = run_with_database(cli.settings, work)
    if as_json:
        emit_json({"sent": delivery.sent, "failed": delivery.failed})
    else:
        click.echo(delivery.describe())
    if delivery.failed:
        sys.exit(1)


def register(group: click.Group) -> None:
    group.add_command(notify_group)
