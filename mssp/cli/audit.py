"""`mssp audit`: list, verify, export the tamper-evident audit log, and write checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mssp import audit, audit_checkpoints
from mssp.cli.common import CliContext, emit_json, json_option, pass_cli, print_table, run_async
from mssp.db import database
from mssp.errors import AuditError


@click.group("audit")
def audit_group() -> None:
    """The tamper-evident audit log of every privileged action."""


@audit_group.command("list")
@click.option("--client", help="Only entries of this client (slug).")
@click.option("--action", help="Only actions starting with this (e.g. run, cred, session).")
@click.option("--since", help="Only entries at or after this ISO time (e.g. 2026-11-01).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@json_option
@pass_cli
def list_cmd(
    cli: CliContext,
    client: str | None,
    action: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List audit entries, oldest first (the newest LIMIT)."""

    async def go() -> list[audit.Entry]:
        async with database(cli.settings):
            return await audit.entries(client=client, action=action, since=since, limit=limit)

    rows = run_async(go())
    if as_json:
        emit_json([e.as_dict() for e in rows])
        return
    print_table(
        [
            {
                "seq": e.seq,
                "at": e.at[:19],
                "actor": e.actor,
                "action": e.action,
                "client": e.client,
                "target": e.target[:40],
                "result": e.result,
            }
            for e in rows
        ],
        ["seq", "at", "actor", "action", "client", "target", "result"],
    )


@audit_group.command("verify")
@click.option(
    "--checkpoints",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A checkpoint file written by `mssp audit checkpoint`; catches truncation and rewrites.",
)
@json_option
@pass_cli
def verify_cmd(cli: CliContext, checkpoints: Path | None, as_json: bool) -> None:
    """Check the hash chain; report the first entry where it breaks. Exit 1 if it does."""
    cps = audit_checkpoints.read(checkpoints) if checkpoints else []

    async def go() -> audit.VerifyResult:
        async with database(cli.settings):
            return await audit.verify(cps)

    result = run_async(go())
    if as_json:
        emit_json(result.__dict__)
    elif result.ok:
        click.echo(f"audit log intact: {result.entries} entries, head {result.head_hash[:16]}")
    else:
        click.echo(
            f"audit log BROKEN at entry {result.first_bad_seq}: {result.problem} "
            f"({result.entries} entries read)"
        )
    if not result.ok:
        raise SystemExit(1)


@audit_group.command("export")
@click.option("--client", required=True, help="The client whose trail to export (slug).")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="File (default stdout)."
)
@pass_cli
def export_cmd(cli: CliContext, client: str, out: Path | None) -> None:
    """Export one client's entries as JSON lines, each with its hash and previous hash."""

    async def go() -> list[audit.Entry]:
        async with database(cli.settings):
            return await audit.entries(client=client)

    lines = [json.dumps(e.as_dict(), sort_keys=True) for e in run_async(go())]
    text = "\n".join(lines) + ("\n" if lines else "")
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        click.echo(f"{len(lines)} entries written to {out}", err=True)


@audit_group.command("checkpoint")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append the signed checkpoint here (somewhere off this machine: NAS, USB, ...).",
)
@json_option
@pass_cli
def checkpoint_cmd(cli: CliContext, out: Path, as_json: bool) -> None:
    """Sign the current chain head and append it to a checkpoint file."""

    async def go() -> audit.VerifyResult:
        async with database(cli.settings):
            return await audit.verify()

    result = run_async(go())
    if not result.ok:
        raise AuditError(
            f"the chain is broken at entry {result.first_bad_seq}; no checkpoint written"
        )
    key = audit_checkpoints.load_or_create_key(cli.settings.config_dir)
    cp = audit_checkpoints.sign(key, result.entries, result.head_hash)
    audit_checkpoints.append(out, cp)
    if as_json:
        emit_json(cp.__dict__)
    else:
        click.echo(f"checkpoint seq {cp.seq} head {cp.hash[:16]} appended to {out}")
        click.echo(f"signing public key: {cp.public_key}")


def register(group: click.Group) -> None:
    group.add_command(audit_group)
