"""In-process helpers: an inventory in the open test database pointing at in-process SSH servers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from mssp.config import Settings
from mssp.inventory import HostRecord
from mssp.sessions.hosts import session_connections
from mssp.vault import FLOOR, Vault
from tests.sshserver import SSHTestServer

PASS = "sessions unit passphrase"


async def seed(
    settings: Settings, servers: Sequence[SSHTestServer], *, client: str = "acme"
) -> tuple[Vault, list[HostRecord]]:
    """Client ``client``, site hq, host srvN -> servers[N-1], each with its own key credential."""
    from mssp.store.credentials import add_credential
    from mssp.store.inventory import create_client, create_host, create_site

    vault = Vault.create(settings.vault_path, PASS, kdf=FLOOR)
    await create_client(client, client.title())
    await create_site(client, "hq", "HQ")
    hosts = []
    for number, srv in enumerate(servers, start=1):
        await add_credential(
            vault,
            client_slug=client,
            name=f"key{number}",
            kind="ssh-key",
            secret=srv.client_key,
            username=srv.username,
        )
        hosts.append(
            await create_host(
                client,
                "hq",
                f"srv{number}",
                address="127.0.0.1",
                port=srv.port,
                username=srv.username,
                credential=f"key{number}",
            )
        )
    return vault, hosts


@contextlib.asynccontextmanager
async def manager_for(settings: Settings, vault: Vault) -> AsyncIterator:
    async with session_connections(settings, vault) as manager:
        yield manager
