"""Resolve the host a session command names, and open the connection manager sessions use."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from mssp.config import Settings
from mssp.connections import ConnectionManager
from mssp.errors import NotFoundError, UsageError
from mssp.inventory import HostRecord
from mssp.vault import Vault


async def resolve_host(spec: str) -> HostRecord:
    """``client/site/host``, or a bare host name that exactly one host in the inventory has."""
    from mssp.store.inventory import get_host, load_hosts

    spec = spec.strip()
    if not spec:
        raise UsageError("no host given")
    if spec.count("/") == 2:
        return await get_host(spec)
    if "/" in spec:
        raise UsageError(f"{spec!r}: give client/site/host or a bare host name")
    matches = [h for h in await load_hosts() if h.name == spec]
    if not matches:
        raise NotFoundError(f"no host named {spec!r}")
    if len(matches) > 1:
        names = ", ".join(h.full_name for h in matches[:10])
        raise UsageError(f"host name {spec!r} is ambiguous: {names}; give client/site/host")
    return matches[0]


@contextlib.asynccontextmanager
async def session_connections(
    settings: Settings, vault: Vault, *, relay: object | None = None
) -> AsyncIterator[ConnectionManager]:
    """A connection manager for interactive work: few retries (a person is waiting)."""
    from mssp.connectors.relay import manager_options, provider_from_settings
    from mssp.store.credentials import VaultCredentialResolver
    from mssp.store.hostkeys import DbHostKeyStore

    # relayed sites go through the site's agent unless the caller brings its own provider
    own = provider_from_settings(settings, vault) if relay is None else None
    options = manager_options(own) if own is not None else {"relay": relay}
    manager = ConnectionManager(
        settings,
        credentials=VaultCredentialResolver(vault),
        host_keys=DbHostKeyStore(),
        connect_attempts=2,
        **options,  # type: ignore[arg-type]
    )
    try:
        yield manager
    finally:
        await manager.aclose()
        if own is not None:
            await own.aclose()
