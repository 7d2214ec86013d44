"""`mssp cred ...` and `mssp vault ...`: credentials in the vault, passphrase change, key rotation.

Secrets never come from command-line arguments (they would land in shell history and in every
process listing): passwords are prompted, or read from stdin with --password-stdin; SSH keys are
read from a file or generated here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from mssp import audit
from mssp.cli.common import CliContext, emit_json, handle_errors, json_option, pass_cli, print_table
from mssp.cli.init import new_passphrase, open_vault, prompt_passphrase, run_with_database
from mssp.errors import AuditError, UsageError
from mssp.store import credentials as creds
from mssp.store import write_transaction
from mssp.vault import Secret, change_passphrase, passphrase_from_settings

T = TypeVar("T")

KEY_TYPES = {"ed25519": "ssh-ed25519", "rsa": "ssh-rsa", "ecdsa": "ecdsa-sha2-nistp256"}


def _atomic(work: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
    """The change and its audit entry in one transaction: both or neither."""

    async def wrapped() -> T:
        async with write_transaction():
            return await work()

    return wrapped


@dataclass(frozen=True)
class NewSecret:
    """A secret gathered from the user, with what may be shown of it."""

    kind: str
    secret: Secret
    public_key: str = ""


def _import_key_file(path: Path) -> NewSecret:
    import asyncssh

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        key = asyncssh.import_private_key(data)
    except asyncssh.KeyImportError as exc:
        if "Passphrase must be specified" not in str(exc):
            raise UsageError(f"{path} is not a private key this tool can read") from None
        passphrase = click.prompt(f"Passphrase of {path}", hide_input=True, err=True)
        try:
            key = asyncssh.import_private_key(data, passphrase)
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError):
            raise UsageError(f"wrong passphrase for {path}, or the key is damaged") from None
    except asyncssh.KeyEncryptionError:
        raise UsageError(f"cannot decrypt {path}") from None
    # stored unencrypted *inside the vault*: the vault is the protection, and the connection
    # layer then needs no second passphrase
    private = key.export_private_key("openssh").decode("ascii")
    public = key.export_public_key("openssh").decode("ascii").strip()
    return NewSecret("ssh-key", Secret(private), public)


def _generate_key(key_type: str, comment: str) -> NewSecret:
    import asyncssh

    options = {"key_size": 4096} if key_type == "rsa" else {}
    key = asyncssh.generate_private_key(KEY_TYPES[key_type], comment=comment, **options)
    private = key.export_private_key("openssh").decode("ascii")
    public = key.export_public_key("openssh").decode("ascii").strip()
    return NewSecret("ssh-key", Secret(private), public)


def _gather(
    ref: str,
    ssh_key: Path | None,
    generate: bool,
    password: bool,
    password_stdin: bool,
    token: bool,
    key_type: str,
) -> NewSecret:
    chosen = [ssh_key is not None, generate, password, password_stdin, token]
    if sum(chosen) != 1:
        raise UsageError(
            "give exactly one of --ssh-key PATH, --generate, --password, --password-stdin, --token"
        )
    if ssh_key is not None:
        return _import_key_file(ssh_key.expanduser())
    if generate:
        return _generate_key(key_type, f"mssp:{ref}")
    if password_stdin:
        text = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        if not text:
            raise UsageError("no password on stdin")
        return NewSecret("password", Secret(text))
    label = "Token" if token else "Password"
    text = click.prompt(
        label, hide_input=True, confirmation_prompt=f"Repeat the {label.lower()}", err=True
    )
    return NewSecret("token" if token else "password", Secret(text))


def secret_options(func: Any) -> Any:
    options = [
        click.option(
            "--ssh-key",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Import this private key file (asks for its passphrase if it has one).",
        ),
        click.option("--generate", is_flag=True, help="Generate a new SSH key pair here."),
        click.option(
            "--type",
            "key_type",
            type=click.Choice(sorted(KEY_TYPES)),
            default="ed25519",
            show_default=True,
            help="Key type for --generate.",
        ),
        click.option("--password", is_flag=True, help="Prompt for a password (asked twice)."),
        click.option("--password-stdin", is_flag=True, help="Read the password from stdin."),
        click.option("--token", is_flag=True, help="Prompt for an API token."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group("cred")
def cred_group() -> None:
    """Credentials (SSH keys, passwords, tokens) kept encrypted in the vault."""


@cred_group.command("add")
@click.argument("ref", metavar="[CLIENT/]NAME")
@secret_options
@click.option("--user", "username", default="", help="User name this credential logs in as.")
@json_option
@pass_cli
def cred_add(cli: CliContext, ref: str, username: str, as_json: bool, **how: Any) -> None:
    """Store a credential: `mssp cred add acme-dental/admin-key --ssh-key ~/.ssh/id_ed25519`.

    Without CLIENT/ the credential is global (usable for every client's hosts). A credential
    named "default" is used by hosts that name none.
    """
    with handle_errors():
        client_slug, name = creds.parse_ref(ref)
        new = _gather(ref, **how)
    vault = open_vault(cli.settings)

    async def work() -> int:
        cred_id = await creds.add_credential(
            vault,
            client_slug=client_slug,
            name=name,
            kind=new.kind,
            secret=new.secret,
            username=username,
            public_key=new.public_key,
        )
        await audit.record(
            "cred.add",
            client=client_slug or "",
            target=ref,
            detail={"kind": new.kind, "id": cred_id},
        )
        return cred_id

    cred_id = run_with_database(cli.settings, _atomic(work))
    result = {"id": cred_id, "ref": ref, "kind": new.kind, "public_key": new.public_key}
    if as_json:
        emit_json(result)
        return
    click.echo(f"credential {ref} ({new.kind}) stored in the vault")
    if how["generate"]:
        click.echo("public key (add it to the hosts' authorized_keys):")
        click.echo(new.public_key)


@cred_group.command("update")
@click.argument("ref", metavar="[CLIENT/]NAME")
@secret_options
@json_option
@pass_cli
def cred_update(cli: CliContext, ref: str, as_json: bool, **how: Any) -> None:
    """Replace a credential's secret (after changing the password or key on the hosts)."""
    with handle_errors():
        creds.parse_ref(ref)
        new = _gather(ref, **how)
    vault = open_vault(cli.settings)

    async def work() -> int:
        info = await creds.get_credential(ref)
        if info.kind != new.kind:
            raise UsageError(f"credential {ref} is a {info.kind}, not a {new.kind}")
        cred_id = await creds.replace_secret(
            vault, ref, new.secret, public_key=new.public_key if new.kind == "ssh-key" else None
        )
        await audit.record(
            "cred.update",
            client=info.client or "",
            target=ref,
            detail={"kind": new.kind, "id": cred_id},
        )
        return cred_id

    cred_id = run_with_database(cli.settings, _atomic(work))
    if as_json:
        emit_json({"id": cred_id, "ref": ref, "kind": new.kind, "public_key": new.public_key})
    else:
        click.echo(f"credential {ref} updated")
        if how["generate"]:
            click.echo(new.public_key)


def _info_json(info: creds.CredentialInfo) -> dict[str, Any]:
    return {**dataclasses.asdict(info), "ref": info.ref}


@cred_group.command("list")
@click.option("--client", help="Only this client's credentials.")
@json_option
@pass_cli
def cred_list(cli: CliContext, client: str | None, as_json: bool) -> None:
    """List credentials (names, kinds, users; never secrets). Needs no passphrase."""
    infos = run_with_database(cli.settings, lambda: creds.list_credentials(client))
    if as_json:
        emit_json([_info_json(i) for i in infos])
        return
    print_table(
        [{**_info_json(i), "client": i.client or "(global)"} for i in infos],
        ["ref", "kind", "username", "hosts", "key_version"],
    )


@cred_group.command("remove")
@click.argument("ref", metavar="[CLIENT/]NAME")
@click.option("--force", is_flag=True, help="Remove even if hosts use it (they lose it).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_cli
def cred_remove(cli: CliContext, ref: str, force: bool, yes: bool, as_json: bool) -> None:
    """Delete a credential from the vault."""
    if not yes:
        click.confirm(f"Remove credential {ref}?", abort=True, err=True)

    async def work() -> int:
        cred_id = await creds.remove_credential(ref, force=force)
        await audit.record("cred.remove", target=ref, detail={"id": cred_id})
        return cred_id

    cred_id = run_with_database(cli.settings, _atomic(work))
    if as_json:
        emit_json({"id": cred_id, "ref": ref, "removed": True})
    else:
        click.echo(f"credential {ref} removed")


async def _audited(
    action: str,
    change: Callable[[], Awaitable[T]],
    *,
    target: str = "",
    detail: dict[str, Any] | None = None,
    done: Callable[[T], dict[str, Any]] | None = None,
) -> T:
    """Run a change that cannot share a transaction with its audit entry (the vault file): an
    intent entry first (AuditError refuses the change before anything is touched), then the
    change, then its outcome (``done`` gives the outcome's detail). Never put a secret in a
    detail."""
    seq = await audit.intent(action, target=target, detail=detail)
    try:
        result = await change()
    except BaseException as exc:
        with contextlib.suppress(AuditError):  # the intent already says it was attempted
            await audit.outcome(
                seq, action, target=target, result="failed", detail={"error": type(exc).__name__}
            )
        raise
    await audit.outcome(
        seq, action, target=target, result="ok", detail=done(result) if done else detail
    )
    return result


def _passwd(cli: CliContext) -> None:
    settings = cli.settings
    with handle_errors():
        old = passphrase_from_settings(settings, prompt=prompt_passphrase("Current passphrase"))
        new = new_passphrase()

    async def change() -> None:
        await asyncio.to_thread(change_passphrase, settings.vault_path, old, new)

    run_with_database(
        settings,
        lambda: _audited("vault.passwd", change, target=str(settings.vault_path)),
    )
    click.echo("vault passphrase changed (credentials were not re-encrypted: not needed)")
    if settings.vault_key_file is not None:
        click.echo(f"remember to update the key file {settings.vault_key_file}", err=True)


@cred_group.command("rotate-passphrase")
@pass_cli
def cred_rotate_passphrase(cli: CliContext) -> None:
    """Change the vault passphrase (same as `mssp vault passwd`)."""
    _passwd(cli)


@click.group("vault")
def vault_group() -> None:
    """The vault holding every credential: passphrase and data key."""


@vault_group.command("passwd")
@pass_cli
def vault_passwd(cli: CliContext) -> None:
    """Change the vault passphrase. Only the data key is rewrapped; crash-safe.

    The current passphrase comes from MSSP_VAULT_PASSPHRASE, the key file, or a prompt; the new
    one is always asked twice.
    """
    _passwd(cli)


@vault_group.command("rotate-key")
@json_option
@pass_cli
def vault_rotate_key(cli: CliContext, as_json: bool) -> None:
    """Re-encrypt every credential under a new random data key (if the old one may have leaked).

    Crash-safe: old keys stay in the vault until every credential uses the new one; running the
    command again after an interruption finishes the rotation.
    """
    vault = open_vault(cli.settings)

    before = vault.key_version

    def work() -> Awaitable[int]:
        return _audited(
            "vault.rotate-key",
            lambda: creds.rotate_data_key(vault),
            target=str(cli.settings.vault_path),
            detail={"key_version": before},
            done=lambda count: {
                "key_version": vault.key_version,
                "previous": before,
                "credentials": count,
            },
        )

    count = run_with_database(cli.settings, work)
    if as_json:
        emit_json({"key_version": vault.key_version, "credentials": count})
    else:
        click.echo(f"data key version {vault.key_version}: {count} credential(s) re-encrypted")


@vault_group.command("status")
@json_option
@pass_cli
def vault_status(cli: CliContext, as_json: bool) -> None:
    """Show where the vault is and whether it can be unlocked unattended (never the secret)."""
    settings = cli.settings
    data = {
        "path": str(settings.vault_path),
        "exists": settings.vault_path.exists(),
        "unattended": "MSSP_VAULT_PASSPHRASE"
        if os.environ.get("MSSP_VAULT_PASSPHRASE")
        else (f"key file {settings.vault_key_file}" if settings.vault_key_file else "no"),
    }
    if as_json:
        emit_json(data)
    else:
        for key, value in data.items():
            click.echo(f"{key + ':':12} {value}")


def register(group: click.Group) -> None:
    group.add_command(cred_group)
    group.add_command(vault_group)
