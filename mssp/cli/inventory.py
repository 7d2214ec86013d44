"""`mssp inventory import`: read an OpenSSH config, Ansible inventory or CSV; preview; write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mssp.cli.common import CliContext, emit_json, handle_errors, json_option, pass_cli, run_async
from mssp.errors import UsageError
from mssp.importers import FORMATS, read_inventory
from mssp.importers.plan import ImportPlan, ParsedInventory, slugify

IMPORT_HELP = """Import hosts from PATH: an OpenSSH client config, an Ansible inventory
(INI or YAML, with group_vars/ and host_vars/ beside it) or a CSV file with a header
(client, site, name, address, port, user, transport, tags).

Always prints a preview of every client, site and host that will be created, updated or left
unchanged, and of everything not imported (vault-encrypted values, passwords, Match blocks,
ProxyCommand). Then writes it all in one transaction, or nothing: a broken file is reported
with its file and line and nothing is imported. Importing the same file twice changes nothing.

\b
Where hosts land:
  --client C --site S   every host goes to C/S (required for an OpenSSH config)
  Ansible               mssp_client / mssp_site vars win; otherwise a top-level group is the
                        client and its child group the site ("main" if none); other groups
                        become tags
  CSV                   the client and site columns (turned into slugs)

\b
Updates: address, port, user and transport follow the file; tags and options are added to
what is there, never removed. Nothing is ever deleted.
"""


def _check_slug(value: str | None, what: str) -> None:
    if value is not None and (not value or slugify(value) != value):
        raise UsageError(f"--{what} {value!r} is not a slug (lower-case a-z, 0-9 and '-')")


async def _run(settings: Any, parsed: ParsedInventory, dry_run: bool) -> tuple[ImportPlan, bool]:
    from mssp.db import database
    from mssp.importers.apply import apply_plan, preview

    async with database(settings):
        plan = await preview(parsed)
        if dry_run or not plan.has_writes:
            return plan, False
        await apply_plan(plan)
        return plan, True


@click.group("inventory")
def inventory_group() -> None:
    """Import hosts from other tools' inventories."""


@inventory_group.command("import", help=IMPORT_HELP)
@click.argument("path", type=click.Path(path_type=Path, dir_okay=True))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="auto",
    show_default=True,
    help="File format (auto: from the name, then the content).",
)
@click.option("--client", help="Put every host under this client (slug).")
@click.option("--site", help="Put every host under this site (slug).")
@click.option("--dry-run", is_flag=True, help="Show the preview only; write nothing.")
@json_option
@pass_cli
def import_command(
    ctx: CliContext,
    path: Path,
    fmt: str,
    client: str | None,
    site: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    with handle_errors():
        _check_slug(client, "client")
        _check_slug(site, "site")
        # the file is read and checked completely before the database is opened
        parsed = read_inventory(path.expanduser(), format=fmt, client=client, site=site)
        plan, written = run_async(_run(ctx.settings, parsed, dry_run))
        if as_json:
            emit_json({**plan.to_dict(), "dry_run": dry_run, "written": written})
            return
        for line in plan.render():
            click.echo(line)
        if dry_run:
            click.echo("dry run: nothing was written")
        elif written:
            click.echo(
                f"imported: {plan.count('create')} created, {plan.count('update')} updated, "
                f"{plan.count('unchanged')} unchanged"
            )
        else:
            click.echo("nothing to do: everything is unchanged")


def register(group: click.Group) -> None:
    group.add_command(inventory_group)
