"""`mssp tui` (and `mssp` alone): open the dashboard on the user's data, with a live engine."""

from __future__ import annotations

import click

from mssp.cli.common import CliContext, handle_errors, pass_cli, run_async
from mssp.errors import ConfigError


@click.command("tui")
@click.option(
    "--read-only",
    is_flag=True,
    help="Open without the vault and the engine: look, but start no runs.",
)
@pass_cli
def tui_cmd(cli: CliContext, read_only: bool) -> None:
    """Open the dashboard: every client, site and host, live.

    Keys: / filter, : command, ? help, enter open, esc back, space select, r run, s shell,
    ctrl+p command palette, ctrl+q quit. Remap any key under [keys] in config.toml.
    """
    # Textual is imported here, not at module level: other commands must not pay for it.
    from tui.keys import validate_keymap

    settings = cli.settings
    with handle_errors():
        validate_keymap(settings.key_bindings)
        if not settings.is_postgres and not settings.db_path.exists():
            raise ConfigError(f"no database at {settings.db_path}; run `mssp init` first")
    vault = None
    if not read_only:
        from mssp.cli.init import open_vault

        vault = open_vault(settings)  # asks for the passphrase before the screen is taken
    with handle_errors():
        run_async(_run(settings, vault))


async def _run(settings, vault) -> None:
    from mssp import db
    from mssp.events import EventBus
    from tui.app import MsspApp
    from tui.services import Services, StoreSource

    bus = EventBus()
    async with db.database(settings):
        if vault is None:
            await MsspApp(Services(StoreSource(), bus, settings, None)).run_async()
            return
        from mssp.connections import ConnectionManager
        from mssp.connectors.relay import manager_options, provider_from_settings
        from mssp.connectors.relay_ops import PresenceWatcher
        from mssp.engine import Engine
        from mssp.store.credentials import VaultCredentialResolver
        from mssp.store.hostkeys import DbHostKeyStore
        from mssp.store.secrets import VaultSecretSource

        relay = provider_from_settings(settings, vault)
        manager = ConnectionManager(
            settings,
            credentials=VaultCredentialResolver(vault),
            host_keys=DbHostKeyStore(),
            **manager_options(relay),
        )
        # agent presence from the relay: stored, and AgentPresenceChanged on the bus
        watcher = PresenceWatcher(relay, bus) if relay is not None else None
        try:
            async with Engine(
                settings, connections=manager, bus=bus, secrets=VaultSecretSource(vault)
            ) as engine:
                if watcher is not None:
                    watcher.start()
                await MsspApp(Services(StoreSource(), bus, settings, engine)).run_async()
        finally:
            if watcher is not None:
                await watcher.aclose()
            await manager.aclose()
            if relay is not None:
                await relay.aclose()


def register(group: click.Group) -> None:
    group.add_command(tui_cmd)
