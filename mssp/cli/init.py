"""`mssp init`: create MSSP_HOME, the database and the vault; helpers the other commands share."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from mssp import db as mssp_db
from mssp.cli.common import CliContext, emit_json, handle_errors, json_option, pass_cli, run_async
from mssp.config import Settings
from mssp.errors import ConfigError, VaultError
from mssp.vault import PASSPHRASE_ENV, Vault, passphrase_from_settings, unlock_from_settings

T = TypeVar("T")

CONFIG_TEMPLATE = """\
# mssp settings. Every key can also be set as MSSP_<KEY> in the environment.
# database_url = "postgres://mssp@127.0.0.1:5432/mssp"   # default: SQLite in the data folder
# vault_key_file = "/root/.config/mssp/vault.key"        # unattended unlock (mode 0600)
# forks = 100
# per_client_limit = 20
# host_key_policy = "accept-new"                         # or "strict"
"""


def run_with_database(settings: Settings, work: Callable[[], Awaitable[T]]) -> T:
    """Open the database (refusing to create one before `mssp init`), run, close; errors mapped
    to exit codes."""
    if not settings.is_postgres and not settings.db_path.exists():
        with handle_errors():
            raise ConfigError(f"no database at {settings.db_path}; run `mssp init` first")

    async def go() -> T:
        async with mssp_db.database(settings):
            return await work()

    with handle_errors():
        return run_async(go())


def prompt_passphrase(label: str = "Vault passphrase") -> Callable[[], str]:
    return lambda: click.prompt(label, hide_input=True, err=True)


def open_vault(settings: Settings) -> Vault:
    """Unlock the vault the way every command does: environment, key file, then a prompt."""
    with handle_errors():
        return unlock_from_settings(settings, prompt=prompt_passphrase())


def new_passphrase(label: str = "New vault passphrase") -> str:
    return click.prompt(
        label, hide_input=True, confirmation_prompt="Repeat the passphrase", err=True
    )


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


@click.command("init")
@json_option
@pass_cli
def init_cmd(cli: CliContext, as_json: bool) -> None:
    """Create the mssp home (config and data folders), the database and the vault.

    The vault passphrase is asked twice, or taken from MSSP_VAULT_PASSPHRASE. Running init again
    is safe: it applies pending database migrations and keeps the existing vault.
    """
    settings = cli.settings
    with handle_errors():
        for folder in {settings.config_dir, settings.data_dir}:
            _private_dir(folder)
        _private_dir(settings.log_dir)
        if not settings.config_file.exists():
            settings.config_file.write_text(CONFIG_TEMPLATE, encoding="utf-8")
            os.chmod(settings.config_file, 0o600)
        run_async(mssp_db.migrate(settings))
        vault_state = "existing"
        if settings.vault_path.exists():
            # prove the passphrase the user keeps around still opens it, when one is at hand
            if os.environ.get(PASSPHRASE_ENV) or settings.vault_key_file is not None:
                unlock_from_settings(settings)
                vault_state = "existing (unlocked)"
        else:
            try:
                passphrase = passphrase_from_settings(settings)
            except VaultError:
                passphrase = new_passphrase()
            Vault.create(settings.vault_path, passphrase)
            vault_state = "created"
    result: dict[str, Any] = {
        "config_dir": str(settings.config_dir),
        "data_dir": str(settings.data_dir),
        "database": settings.effective_database_url
        if not settings.is_postgres
        else "postgresql (MSSP_DATABASE_URL)",
        "vault": str(settings.vault_path),
        "vault_state": vault_state,
    }
    if as_json:
        emit_json(result)
        return
    click.echo(f"config:   {result['config_dir']}")
    click.echo(f"data:     {result['data_dir']}")
    click.echo(f"database: {result['database']}")
    click.echo(f"vault:    {result['vault']} ({vault_state})")
    if vault_state == "created":
        click.echo("Keep the vault passphrase safe: without it no stored credential can be read.")


def register(group: click.Group) -> None:
    group.add_command(init_cmd)
