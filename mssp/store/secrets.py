"""Hands tasks the vault secrets they declared (the engine's SecretSource), per host's client."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mssp.inventory import HostRecord
from mssp.store.credentials import _decrypt, find_credential
from mssp.vault import Vault

#: tasks may name a secret "credential:NAME" or just "NAME"; both mean a vault credential
PREFIX = "credential:"


class VaultSecretSource:
    """Resolves each declared name to the credential of that name: the host's client's first,
    then a global one; another client's credential is refused (UsageError)."""

    def __init__(self, vault: Vault) -> None:
        self._vault = vault

    async def secrets_for(self, host: HostRecord, names: tuple[str, ...]) -> Mapping[str, Any]:
        out: dict[str, Any] = {}
        for name in names:
            ref = name[len(PREFIX) :] if name.startswith(PREFIX) else name
            row = await find_credential(ref, for_client=host.client)
            out[name] = _decrypt(self._vault, row)
        return out
