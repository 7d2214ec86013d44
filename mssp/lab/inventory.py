"""Write the running lab into the mssp inventory (clients, sites, hosts, credentials, pinned host
keys) so every mssp command works against it at once; and remove it again.

Credentials go through the vault: per lab client, ``lab-key`` (the lab's SSH client key, user root)
and ``lab-admin`` (the hosts' ``admin`` password, for sudo-with-password). If no vault exists, one
is created with MSSP_VAULT_PASSPHRASE, or else with a random passphrase written to
``config_dir/lab-vault.key`` (0600) so the lab and the demo unlock it unattended
(MSSP_VAULT_KEY_FILE=that file). Registration is idempotent: a second `lab up` updates addresses
and re-pins host keys.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mssp import db as mssp_db
from mssp.config import Settings
from mssp.connectors.base import HostKeyInfo
from mssp.errors import AlreadyExistsError, NotFoundError, VaultError
from mssp.lab.state import LabState
from mssp.lab.windows import ADMIN_USER
from mssp.store import credentials as store_creds
from mssp.store import inventory as store_inv
from mssp.store.hostkeys import DbHostKeyStore, fingerprint, normalise_public_key
from mssp.vault import PASSPHRASE_ENV, Vault, read_key_file

KEY_CREDENTIAL = "lab-key"
ADMIN_CREDENTIAL = "lab-admin"
WINDOWS_CREDENTIAL = "lab-windows"


@dataclass(frozen=True)
class Registration:
    """What `lab up` wrote into the inventory."""

    clients: int
    sites: int
    hosts: int
    pinned: int
    vault_created: bool
    vault_key_file: str | None
    """The file holding the vault passphrase when the lab created the vault with a random one."""


def lab_vault_key_file(settings: Settings) -> Path:
    return settings.config_dir / "lab-vault.key"


def open_vault(settings: Settings, env: Mapping[str, str]) -> tuple[Vault, bool, Path | None]:
    """Unlock the vault, or create it; returns (vault, created, key file written)."""
    lab_key = lab_vault_key_file(settings)
    if not settings.vault_path.exists():
        passphrase = env.get(PASSPHRASE_ENV) or ""
        written = None
        if not passphrase:
            passphrase = secrets.token_urlsafe(32)
            settings.config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(lab_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(passphrase + "\n")
            written = lab_key
        return Vault.create(settings.vault_path, passphrase), True, written
    if env.get(PASSPHRASE_ENV):
        passphrase = env[PASSPHRASE_ENV]
    elif settings.vault_key_file is not None:
        passphrase = read_key_file(settings.vault_key_file)
    elif lab_key.exists():
        passphrase = read_key_file(lab_key)
    else:
        raise VaultError(
            f"the vault is locked: set {PASSPHRASE_ENV} or vault_key_file so `lab up` can store "
            "the lab's credentials",
            title="Vault locked",
        )
    return Vault.unlock(settings.vault_path, passphrase), False, None


async def _ensure_credential(vault: Vault, client: str, name: str, **fields: str) -> None:
    secret = fields.pop("secret")
    try:
        await store_creds.add_credential(
            vault, client_slug=client, name=name, secret=secret, **fields
        )
    except AlreadyExistsError:
        await store_creds.replace_secret(
            vault, f"{client}/{name}", secret, public_key=fields.get("public_key")
        )


async def register(
    state: LabState, *, vault: Vault, private_key: str, admin_password: str
) -> tuple[int, int, int, int]:
    """Write the lab into the open database; returns (clients, sites, hosts, pinned keys)."""
    clients = {s.client: s.client_name for s in state.sites}
    for slug, name in clients.items():
        try:
            await store_inv.create_client(slug, name)
        except AlreadyExistsError:
            pass
        await _ensure_credential(
            vault, slug, KEY_CREDENTIAL, kind="ssh-key", secret=private_key,
            username="root", public_key=state.client_public_key,
        )  # fmt: skip
        await _ensure_credential(
            vault, slug, ADMIN_CREDENTIAL, kind="password", secret=admin_password,
            username="admin",
        )  # fmt: skip
        if any(h.transport == "winrm" and h.client == slug for h in state.hosts):
            await _ensure_credential(
                vault, slug, WINDOWS_CREDENTIAL, kind="password", secret=admin_password,
                username=ADMIN_USER,
            )  # fmt: skip
    for site in state.sites:
        try:
            await store_inv.create_site(site.client, site.slug, reach=site.reach)
        except AlreadyExistsError:
            pass
    wanted = {h.full_name for h in state.hosts}
    for record in await store_inv.load_hosts():
        if record.client in clients and record.full_name not in wanted:
            await store_inv.remove_host(record.full_name)  # left over from a bigger lab
    keys = DbHostKeyStore()
    pinned = 0
    for h in state.hosts:
        fields = dict(
            address=h.address, port=h.port, username=h.username, via="site",
            transport=h.transport, options=h.options or None,
            credential=WINDOWS_CREDENTIAL if h.transport == "winrm" else KEY_CREDENTIAL,
        )  # fmt: skip
        try:
            record = await store_inv.create_host(h.client, h.site, h.name, tags=h.tags, **fields)
        except AlreadyExistsError:
            record = await store_inv.update_host(h.full_name, add_tags=h.tags, **fields)
        await keys.forget(record)
        if not h.host_key:
            continue  # the simulated Windows host: WinRM pins its certificate (options)
        algorithm, public = normalise_public_key(h.host_key)
        await keys.pin(record, HostKeyInfo(algorithm, public, fingerprint(public)))
        pinned += 1
    return len(clients), len(state.sites), len(state.hosts), pinned


async def register_lab(
    settings: Settings,
    state: LabState,
    *,
    private_key: str,
    admin_password: str,
    env: Mapping[str, str] | None = None,
) -> Registration:
    """Open the vault (creating it if needed) and the database, and register the lab."""
    env = os.environ if env is None else env
    vault, created, key_file = open_vault(settings, env)
    async with mssp_db.database(settings):
        counts = await register(
            state, vault=vault, private_key=private_key, admin_password=admin_password
        )
    return Registration(*counts, vault_created=created, vault_key_file=str(key_file or "") or None)


async def unregister_lab(settings: Settings, state: LabState) -> int:
    """Remove the lab's clients (with their sites, hosts, credentials); returns how many."""
    removed = 0
    async with mssp_db.database(settings):
        for slug in sorted({s.client for s in state.sites}):
            try:
                await store_inv.remove_client(slug, force=True)
                removed += 1
            except NotFoundError:
                pass
    return removed
