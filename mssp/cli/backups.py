"""`mssp backups status|history`: the latest restore-verified check per host; a host's record."""

from __future__ import annotations

from typing import Any

import click

from mssp.cli.common import CliContext, emit_json, json_option, pass_cli, print_table
from mssp.cli.init import run_with_database
from mssp.output import neutralise


def _row(check: Any, *, with_host: bool) -> dict[str, Any]:
    evidence = check.evidence or {}
    latest = evidence.get("latest") or {}
    verify = evidence.get("check") or {}
    row = {
        "state": check.state,
        "checked": f"{check.checked_at:%Y-%m-%d %H:%M}",
        "snapshot": latest.get("short_id", "-"),
        "read": verify.get("subset", "-"),
        "reason": neutralise(check.reason)[:90],
    }
    if with_host:
        row = {"host": check.host, **row}
    return row


@click.group("backups")
def backups_group() -> None:
    """Restore-verified backup checks (run by the backup.verify task, nightly via `mssp daemon`)."""


@backups_group.command("status")
@click.option("--client", default=None, help="Only this client's hosts.")
@json_option
@pass_cli
def backups_status(cli: CliContext, client: str | None, as_json: bool) -> None:
    """The latest verification of every host: state (VERIFIED, STALE, CORRUPT, UNVERIFIABLE,
    NOT_RUN) and the reason in words. Verifications run by hand are included."""
    from mssp.backups.history import latest_checks, sync_checks

    async def work() -> list[Any]:
        await sync_checks()
        return await latest_checks(client)

    checks = run_with_database(cli.settings, work)
    if as_json:
        emit_json([c.to_json() for c in checks])
        return
    print_table(
        [_row(c, with_host=True) for c in checks],
        ["host", "state", "checked", "snapshot", "read", "reason"],
    )


@backups_group.command("history")
@click.argument("host")
@click.option("--limit", default=30, show_default=True, help="How many checks to show.")
@json_option
@pass_cli
def backups_history(cli: CliContext, host: str, limit: int, as_json: bool) -> None:
    """A host's verifications (HOST as client/site/host), newest first, with their evidence."""
    from mssp.backups.history import host_history, sync_checks

    async def work() -> list[Any]:
        await sync_checks()
        return await host_history(host, limit=limit)

    checks = run_with_database(cli.settings, work)
    if as_json:
        emit_json([c.to_json() for c in checks])
        return
    print_table(
        [_row(c, with_host=False) for c in checks],
        ["state", "checked", "snapshot", "read", "reason"],
    )


def register(group: click.Group) -> None:
    group.add_command(backups_group)
