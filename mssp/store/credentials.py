"""Credentials in the database: ciphertexts bound to their row, and the resolver connections use.

A credential row is created first, then its secret is encrypted with the row's id in the
associated data and written into the same row, in one transaction: a ciphertext copied to another
row does not decrypt, and a failure leaves no half-made row. Listings never decrypt anything.

Names: a credential belongs to a client (``acme-dental/admin-key``) or is global (``admin-key``).
A host may use its own client's credentials and global ones, never another client's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from mssp.errors import AlreadyExistsError, NotFoundError, UsageError, VaultError
from mssp.inventory import HostRecord
from mssp.models.inventory import Client, Credential, Host
from mssp.store import write_transaction
from mssp.store.names import CREDENTIAL_KINDS, check_choice, check_slug, check_username
from mssp.vault import Secret, Vault

if TYPE_CHECKING:
    from mssp.connections import Credentials

TABLE = "credential"
FIELD = "secret"
#: the credential a host without its own uses: the client's "default", then the global one
DEFAULT_NAME = "default"


@dataclass(frozen=True)
class CredentialInfo:
    """A credential as listings show it: never its secret."""

    id: int
    client: str | None
    """Client slug, or None for a global credential."""
    name: str
    kind: str
    username: str
    public_key: str
    key_version: int
    hosts: int
    """How many hosts use it (as login or become credential)."""
    created_at: datetime | None
    updated_at: datetime | None

    @property
    def ref(self) -> str:
        return f"{self.client}/{self.name}" if self.client else self.name


def parse_ref(ref: str) -> tuple[str | None, str]:
    """'acme/admin-key' -> ('acme', 'admin-key'); 'admin-key' -> (None, 'admin-key')."""
    parts = ref.strip().split("/")
    if len(parts) == 1:
        return None, check_slug(parts[0], "credential name")
    if len(parts) == 2:
        return check_slug(parts[0], "client slug"), check_slug(parts[1], "credential name")
    raise UsageError(f"invalid credential reference {ref!r}: expected NAME or CLIENT/NAME")


async def _client_or_none(slug: str | None) -> Client | None:
    if slug is None:
        return None
    client = await Client.get_or_none(slug=slug)
    if client is None:
        raise NotFoundError(f"no client {slug!r}")
    return client


async def find_credential(ref: str, *, for_client: str | None = None) -> Credential:
    """Look a credential up by reference. With ``for_client`` (a host's client), a bare name is
    searched in that client first, then among global ones; another client's is refused."""
    client_slug, name = parse_ref(ref)
    if client_slug is not None:
        if for_client is not None and client_slug != for_client:
            raise UsageError(
                f"credential {ref!r} belongs to client {client_slug!r}, not {for_client!r}"
            )
        row = await Credential.get_or_none(client__slug=client_slug, name=name)
    else:
        row = None
        if for_client is not None:
            row = await Credential.get_or_none(client__slug=for_client, name=name)
        if row is None:
            row = await Credential.get_or_none(client_id=None, name=name)
    if row is None:
        raise NotFoundError(f"no credential {ref!r}")
    return row


async def add_credential(
    vault: Vault,
    *,
    client_slug: str | None,
    name: str,
    kind: str,
    secret: bytes | str | Secret,
    username: str = "",
    public_key: str = "",
) -> int:
    """Store a new credential; returns its id. AlreadyExistsError if the name is taken."""
    check_slug(name, "credential name")
    check_choice(kind, CREDENTIAL_KINDS, "credential kind")
    if username:
        check_username(username)
    plain = _plain(secret)
    if not plain:
        raise UsageError("the secret is empty")
    async with write_transaction():
        client = await _client_or_none(client_slug)
        client_id = client.id if client else None
        if await Credential.filter(client_id=client_id, name=name).exists():
            where = f"{client_slug}/{name}" if client_slug else name
            raise AlreadyExistsError(f"credential {where!r} already exists")
        row = await Credential.create(
            client_id=client_id,
            name=name,
            kind=kind,
            username=username,
            public_key=public_key.strip(),
            ciphertext=None,
            key_version=vault.key_version,
        )
        row.ciphertext = vault.encrypt(plain, table=TABLE, row_id=row.id, field=FIELD)
        await row.save(update_fields=["ciphertext"])
        return row.id


def _plain(secret: bytes | str | Secret) -> bytes:
    if isinstance(secret, Secret):
        return secret.reveal_bytes()
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


async def get_secret(vault: Vault, credential_id: int) -> Secret:
    """Decrypt one credential's secret (VaultError if it does not verify)."""
    row = await Credential.get_or_none(id=credential_id)
    if row is None:
        raise NotFoundError(f"no credential with id {credential_id}")
    return _decrypt(vault, row)


def _decrypt(vault: Vault, row: Credential) -> Secret:
    if row.ciphertext is None:
        raise VaultError(f"credential {row.name!r} has no secret stored")
    return vault.decrypt(bytes(row.ciphertext), table=TABLE, row_id=row.id, field=FIELD)


async def replace_secret(
    vault: Vault, ref: str, secret: bytes | str | Secret, *, public_key: str | None = None
) -> int:
    """Put a new secret into an existing credential (a rotated password or key)."""
    plain = _plain(secret)
    if not plain:
        raise UsageError("the secret is empty")
    async with write_transaction():
        row = await find_credential(ref)
        row.ciphertext = vault.encrypt(plain, table=TABLE, row_id=row.id, field=FIELD)
        row.key_version = vault.key_version
        fields = ["ciphertext", "key_version", "updated_at"]
        if public_key is not None:
            row.public_key = public_key.strip()
            fields.append("public_key")
        await row.save(update_fields=fields)
        return row.id


async def list_credentials(client_slug: str | None = None) -> list[CredentialInfo]:
    query = Credential.all()
    if client_slug is not None:
        await _client_or_none(client_slug)
        query = query.filter(client__slug=client_slug)
    rows = await query.prefetch_related("client").order_by("name", "id")
    usage: dict[int, int] = {}
    for cred_id, become_id in await Host.all().values_list("credential_id", "become_credential_id"):
        for used in {cred_id, become_id} - {None}:
            usage[used] = usage.get(used, 0) + 1
    infos = [
        CredentialInfo(
            id=row.id,
            client=row.client.slug if row.client else None,
            name=row.name,
            kind=row.kind,
            username=row.username,
            public_key=row.public_key,
            key_version=row.key_version,
            hosts=usage.get(row.id, 0),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
        for row in rows
    ]
    return sorted(infos, key=lambda info: (info.client or "", info.name))


async def get_credential(ref: str) -> CredentialInfo:
    row = await find_credential(ref)
    for info in await list_credentials():
        if info.id == row.id:
            return info
    raise NotFoundError(f"no credential {ref!r}")  # deleted in between


async def remove_credential(ref: str, *, force: bool = False) -> int:
    """Delete a credential. Refused while hosts use it unless ``force`` (they are unset)."""
    async with write_transaction():
        row = await find_credential(ref)
        users = await Host.filter(credential_id=row.id).count()
        users += await Host.filter(become_credential_id=row.id).count()
        if users and not force:
            raise UsageError(
                f"credential {ref!r} is used by {users} host(s); use --force to remove it anyway"
            )
        await Host.filter(credential_id=row.id).update(credential_id=None)
        await Host.filter(become_credential_id=row.id).update(become_credential_id=None)
        await row.delete()
        return row.id


async def rotate_data_key(vault: Vault) -> int:
    """Re-encrypt every credential under a fresh data key; returns how many were re-encrypted.

    Crash-safe in three steps: the new key is added to the vault header (old keys kept); all rows
    are re-encrypted in one transaction; then keys no row uses any more are retired. A crash
    between steps leaves every row readable, and running the rotation again finishes it."""
    vault.add_data_key()
    count = 0
    async with write_transaction():
        for row in await Credential.all().order_by("id"):
            if row.ciphertext is None:
                continue
            secret = _decrypt(vault, row)
            row.ciphertext = vault.encrypt(
                secret.reveal_bytes(), table=TABLE, row_id=row.id, field=FIELD
            )
            row.key_version = vault.key_version
            await row.save(update_fields=["ciphertext", "key_version"])
            count += 1
    in_use = set(await Credential.all().distinct().values_list("key_version", flat=True))
    vault.retire_data_keys(in_use)
    return count


@dataclass(frozen=True)
class _Login:
    kind: str
    secret: Secret


class VaultCredentialResolver:
    """Gives the connection manager a host's credentials, decrypted at the moment of use.

    Implements mssp.connections.CredentialResolver. A host without a credential of its own uses
    its client's credential named "default", else the global "default"; without any, every field
    is None (the connector then fails with AuthError)."""

    def __init__(self, vault: Vault, *, cache_seconds: float = 30.0) -> None:
        self._vault = vault
        # A fleet run resolves the same few credentials for hundreds of hosts: each is read and
        # decrypted once per ``cache_seconds`` (a changed credential is seen after that).
        self._cache_seconds = cache_seconds
        self._cache: dict[object, tuple[float, _Login | None]] = {}

    async def _login(self, host: HostRecord) -> _Login | None:
        credential_id = host.credential_id
        if credential_id is None and host.id is None:
            credential_id = await _stored_credential_id(host, "credential_id")
        key: object = credential_id if credential_id is not None else ("default", host.client)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] <= self._cache_seconds:
            return cached[1]
        if credential_id is not None:
            row = await Credential.get_or_none(id=credential_id)
        else:
            row = await Credential.get_or_none(client__slug=host.client, name=DEFAULT_NAME)
            if row is None:
                row = await Credential.get_or_none(client_id=None, name=DEFAULT_NAME)
        login = None if row is None else _Login(row.kind, _decrypt(self._vault, row))
        self._cache[key] = (now, login)
        return login

    async def resolve(self, host: HostRecord) -> Credentials:
        # imported at use: the connection layer (asyncssh) stays out of plain inventory commands
        from mssp.connections import Credentials

        login = await self._login(host)
        password = private_key = become = None
        if login is not None:
            if login.kind == "ssh-key":
                private_key = login.secret.reveal()
            else:
                password = login.secret.reveal()
        become_id = host.become_credential_id
        if become_id is None and host.id is None:
            become_id = await _stored_credential_id(host, "become_credential_id")
        if become_id is not None:
            become = (await get_secret(self._vault, become_id)).reveal()
        elif password is not None:
            # sudo asks for the login password unless a separate one is configured
            become = password
        return Credentials(
            password=password,
            private_key=private_key,
            private_key_passphrase=None,
            become_password=become,
        )


async def _stored_credential_id(host: HostRecord, column: str) -> int | None:
    """The credential column of a record built outside the database (no id), looked up by name."""
    row = await Host.get_or_none(
        site__client__slug=host.client, site__slug=host.site, name=host.name
    )
    return getattr(row, column) if row is not None else None
