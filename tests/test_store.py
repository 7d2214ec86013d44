"""The data-access layer on SQLite and PostgreSQL: inventory CRUD, credentials, host key pins."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from pathlib import Path

import pytest
from tortoise import connections

from mssp.config import Settings
from mssp.connectors.base import HostKeyInfo
from mssp.errors import AlreadyExistsError, NotFoundError, UsageError, VaultError
from mssp.models.inventory import Client, Credential, Host, Site
from mssp.store import inventory as inv
from mssp.store import write_transaction
from mssp.store.credentials import (
    VaultCredentialResolver,
    add_credential,
    get_secret,
    list_credentials,
    remove_credential,
    replace_secret,
    rotate_data_key,
)
from mssp.store.hostkeys import DbHostKeyStore, fingerprint
from mssp.vault import FLOOR, Vault

PASS = "correct horse battery"
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
ED25519_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsMFgAHRaYL8Bfy2PkZuiwq5W0T2wL4r2gJYYb4ZcdD"


@pytest.fixture
def vault(db: Settings) -> Vault:
    return Vault.create(db.vault_path, PASS, kdf=FLOOR)


async def _acme() -> None:
    await inv.create_client("acme-dental", "Acme Dental", timezone="Europe/Berlin")
    await inv.create_site("acme-dental", "main-office", "Main office")


async def test_client_site_host_round_trip(db: Settings) -> None:
    await _acme()
    await inv.create_site("acme-dental", "branch", reach="relay")
    rec = await inv.create_host(
        "acme-dental",
        "main-office",
        "fs01",
        address="192.0.2.10",
        username="admin",
        tags=["FileServer", "backup"],
    )
    assert rec.full_name == "acme-dental/main-office/fs01"
    assert rec.tags == frozenset({"fileserver", "backup"}) and rec.via == "direct"
    await inv.create_host(
        "acme-dental",
        "branch",
        "pc01",
        address="10.0.0.5",
        transport="winrm",
        port=5986,
        options={"scheme": "https"},
    )
    await inv.create_host("acme-dental", "branch", "pc02", address="10.0.0.6", via="direct")
    hosts = await inv.load_hosts()
    assert [h.full_name for h in hosts] == [
        "acme-dental/branch/pc01",
        "acme-dental/branch/pc02",
        "acme-dental/main-office/fs01",
    ]
    # "site" follows the site's reach; an explicit via wins
    assert [h.via for h in hosts] == ["relay", "direct", "direct"]
    assert hosts[0].options == {"scheme": "https"} and hosts[0].port == 5986
    assert await inv.get_host("acme-dental/main-office/fs01") == rec
    [client] = await inv.list_clients()
    assert (client.slug, client.name, client.timezone, client.sites, client.hosts) == (
        "acme-dental",
        "Acme Dental",
        "Europe/Berlin",
        2,
        3,
    )
    sites = await inv.list_sites("acme-dental")
    assert [(s.full_name, s.reach, s.hosts) for s in sites] == [
        ("acme-dental/branch", "relay", 2),
        ("acme-dental/main-office", "direct", 1),
    ]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: inv.create_client("Acme", "Acme"), UsageError),
        (lambda: inv.create_client("acme-", "Acme"), UsageError),
        (lambda: inv.create_client("ok", "Ok", timezone="Mars/Olympus"), UsageError),
        (lambda: inv.create_client("acme-dental", "Dup"), AlreadyExistsError),
        (lambda: inv.create_site("nope", "x"), NotFoundError),
        (lambda: inv.create_site("acme-dental", "main-office"), AlreadyExistsError),
        (lambda: inv.create_site("acme-dental", "x", reach="carrier-pigeon"), UsageError),
        (
            lambda: inv.create_host("acme-dental", "main-office", "h", address="-oProxyCommand=x"),
            UsageError,
        ),
        (lambda: inv.create_host("acme-dental", "main-office", "h", address="a b"), UsageError),
        (
            lambda: inv.create_host("acme-dental", "main-office", "h", address="x", port=0),
            UsageError,
        ),
        (lambda: inv.create_host("acme-dental", "main-office", "a,b", address="x"), UsageError),
        (
            lambda: inv.create_host(
                "acme-dental", "main-office", "h", address="x", transport="telnet"
            ),
            UsageError,
        ),
        (
            lambda: inv.create_host(
                "acme-dental", "main-office", "h", address="x", tags=["bad tag"]
            ),
            UsageError,
        ),
        (
            lambda: inv.create_host(
                "acme-dental", "main-office", "h", address="x", credential="missing"
            ),
            NotFoundError,
        ),
        (lambda: inv.create_host("acme-dental", "nowhere", "h", address="x"), NotFoundError),
        (lambda: inv.get_host("acme-dental/main-office"), UsageError),
        (lambda: inv.get_host("acme-dental/main-office/none"), NotFoundError),
    ],
)
async def test_bad_input_is_refused_and_changes_nothing(db: Settings, call, error) -> None:
    await _acme()
    before = (await Client.all().count(), await Site.all().count(), await Host.all().count())
    with pytest.raises(error):
        await call()
    after = (await Client.all().count(), await Site.all().count(), await Host.all().count())
    assert before == after


async def test_update_and_remove(db: Settings) -> None:
    await _acme()
    await inv.create_host("acme-dental", "main-office", "fs01", address="192.0.2.10", tags=["a"])
    rec = await inv.update_host(
        "acme-dental/main-office/fs01",
        address="fs01.lan",
        port=2222,
        add_tags=["b"],
        remove_tags=["a"],
        options={"k": 1},
        via="relay",
    )
    assert (rec.address, rec.port, rec.tags, rec.options, rec.via) == (
        "fs01.lan",
        2222,
        frozenset({"b"}),
        {"k": "1"},
        "relay",
    )
    with pytest.raises(UsageError, match="has 1 host"):
        await inv.remove_site("acme-dental/main-office")
    with pytest.raises(UsageError, match="--force"):
        await inv.remove_client("acme-dental")
    assert await Host.all().count() == 1
    summary = await inv.remove_client("acme-dental", force=True)
    assert (summary.clients, summary.sites, summary.hosts) == (1, 1, 1)
    assert await Client.all().count() == await Site.all().count() == await Host.all().count() == 0


async def test_outer_transaction_is_all_or_nothing(db: Settings) -> None:
    """What the importers rely on: a failure late in a batch leaves nothing behind."""
    with pytest.raises(AlreadyExistsError):
        async with write_transaction():
            await _acme()
            await inv.create_host("acme-dental", "main-office", "a", address="192.0.2.1")
            await inv.create_host("acme-dental", "main-office", "a", address="192.0.2.2")
    assert await Client.all().count() == 0 and await Host.all().count() == 0


async def test_credentials_bound_to_their_row(db: Settings, vault: Vault) -> None:
    await _acme()
    a = await add_credential(
        vault,
        client_slug="acme-dental",
        name="admin",
        kind="password",
        secret="pw-a",
        username="admin",
    )
    b = await add_credential(vault, client_slug=None, name="admin", kind="password", secret="pw-b")
    assert (await get_secret(vault, a)).reveal() == "pw-a"
    assert (await get_secret(vault, b)).reveal() == "pw-b"
    with pytest.raises(AlreadyExistsError):
        await add_credential(vault, client_slug=None, name="admin", kind="password", secret="x")
    # a ciphertext moved to another row does not decrypt
    row_a = await Credential.get(id=a)
    await Credential.filter(id=b).update(ciphertext=row_a.ciphertext)
    with pytest.raises(VaultError, match="does not verify"):
        await get_secret(vault, b)
    # a flipped bit in the stored ciphertext fails
    damaged = bytearray(row_a.ciphertext)
    damaged[-5] ^= 0x10
    await Credential.filter(id=a).update(ciphertext=bytes(damaged))
    with pytest.raises(VaultError):
        await get_secret(vault, a)
    # listings never decrypt and never show the secret
    infos = await list_credentials()
    assert [i.ref for i in infos] == ["admin", "acme-dental/admin"]
    assert "pw-" not in repr(infos)


async def test_wrong_passphrase_changes_nothing(db: Settings, vault: Vault) -> None:
    cred = await add_credential(vault, client_slug=None, name="k", kind="token", secret="tok")
    before = db.vault_path.read_bytes()
    with pytest.raises(VaultError):
        Vault.unlock(db.vault_path, "wrong passphrase!")
    assert db.vault_path.read_bytes() == before
    reopened = Vault.unlock(db.vault_path, PASS)
    assert (await get_secret(reopened, cred)).reveal() == "tok"


async def test_credential_of_another_client_is_refused(db: Settings, vault: Vault) -> None:
    await _acme()
    await inv.create_client("other", "Other")
    await add_credential(vault, client_slug="other", name="key", kind="password", secret="x")
    with pytest.raises(UsageError, match="belongs to client"):
        await inv.create_host(
            "acme-dental", "main-office", "h", address="h", credential="other/key"
        )
    with pytest.raises(NotFoundError):
        await inv.create_host("acme-dental", "main-office", "h", address="h", credential="key")


async def test_remove_and_replace_credential(db: Settings, vault: Vault) -> None:
    await _acme()
    await add_credential(vault, client_slug="acme-dental", name="pw", kind="password", secret="1")
    await inv.create_host("acme-dental", "main-office", "h", address="h", credential="pw")
    cred_id = await replace_secret(vault, "acme-dental/pw", "2")
    assert (await get_secret(vault, cred_id)).reveal() == "2"
    with pytest.raises(UsageError, match="used by 1 host"):
        await remove_credential("acme-dental/pw")
    await remove_credential("acme-dental/pw", force=True)
    assert (await inv.get_host("acme-dental/main-office/h")).credential_id is None


async def test_rotate_data_key_reencrypts_every_row(db: Settings, vault: Vault) -> None:
    ids = [
        await add_credential(vault, client_slug=None, name=f"c{i}", kind="password", secret=f"s{i}")
        for i in range(3)
    ]
    old_blobs = {r.id: bytes(r.ciphertext) for r in await Credential.all()}
    assert await rotate_data_key(vault) == 3
    assert {r.key_version for r in await Credential.all()} == {2}
    reopened = Vault.unlock(db.vault_path, PASS)
    assert reopened.key_versions == (2,)
    for i, cred_id in enumerate(ids):
        assert (await get_secret(reopened, cred_id)).reveal() == f"s{i}"
        with pytest.raises(VaultError):
            reopened.decrypt(old_blobs[cred_id], table="credential", row_id=cred_id, field="secret")


async def test_host_key_store(db: Settings) -> None:
    await _acme()
    rec = await inv.create_host("acme-dental", "main-office", "h", address="h")
    store = DbHostKeyStore()
    assert await store.pinned(rec) == []
    info = HostKeyInfo("ssh-ed25519", ED25519 + " root@h", fingerprint(ED25519))
    await store.pin(rec, info)
    await store.pin(rec, info)  # idempotent
    assert await store.pinned(rec) == [ED25519]
    await store.pin(rec, HostKeyInfo("ssh-ed25519", ED25519_B, ""), is_ca=True)
    assert await store.pinned(rec) == [ED25519]
    assert await store.trusted_cas(rec) == [ED25519_B]
    assert fingerprint(ED25519).startswith("SHA256:")
    with pytest.raises(UsageError):
        await store.pin(rec, HostKeyInfo("ssh-rsa", "ssh-rsa AAAA", ""))
    assert await store.forget(rec) == 2
    assert await store.pinned(rec) == []


async def test_pins_cached_for_a_fleet_but_never_a_stale_none(db: Settings) -> None:
    """Pins are read in one query for many hosts; a pin made by another process is seen at once
    where the cache said "none" (which would otherwise let a first contact pin a second key)."""
    await _acme()
    a = await inv.create_host("acme-dental", "main-office", "a", address="a")
    b = await inv.create_host("acme-dental", "main-office", "b", address="b")
    info = HostKeyInfo("ssh-ed25519", ED25519, fingerprint(ED25519))
    await DbHostKeyStore().pin(a, info)
    fleet = DbHostKeyStore(cache_seconds=3600)
    assert await fleet.pinned(a) == [ED25519]
    assert await fleet.pinned(b) == []
    await DbHostKeyStore().pin(b, info)  # another process pins b
    assert await fleet.pinned(b) == [ED25519]


async def test_resolver_gives_host_credentials(db: Settings, vault: Vault) -> None:
    await _acme()
    await add_credential(
        vault,
        client_slug="acme-dental",
        name="key",
        kind="ssh-key",
        secret="-----BEGIN OPENSSH PRIVATE KEY-----\nx\n",
    )
    await add_credential(
        vault, client_slug="acme-dental", name="sudo", kind="password", secret="sudo-pw"
    )
    await add_credential(
        vault, client_slug=None, name="default", kind="password", secret="fallback-pw"
    )
    with_key = await inv.create_host(
        "acme-dental", "main-office", "a", address="a", credential="key", become_credential="sudo"
    )
    plain = await inv.create_host("acme-dental", "main-office", "b", address="b")
    resolver = VaultCredentialResolver(vault)
    creds = await resolver.resolve(with_key)
    assert creds.private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert creds.password is None and creds.become_password == "sudo-pw"
    fallback = await resolver.resolve(plain)
    assert fallback.password == "fallback-pw" and fallback.private_key is None
    assert "fallback-pw" not in repr(fallback) and "sudo-pw" not in repr(creds)


def _encodings(canary: bytes) -> list[bytes]:
    forms = [
        canary,
        canary.hex().encode(),
        canary.hex().upper().encode(),
        canary.decode().encode("utf-16-le"),
    ]
    for shift in range(3):
        # base64 of the canary at any alignment shares this middle part
        encoded = base64.b64encode(b"\0" * shift + canary)
        forms.append(encoded[4:-4])
    return forms


async def test_canary_secret_is_nowhere_at_rest(db: Settings, vault: Vault) -> None:
    canary = b"CANARY-7f3a9c1e5b-secret"
    db.log_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(db.log_dir / "mssp.log")
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # tortoise logs every query with its values at DEBUG
    try:
        await _acme()
        cred = await add_credential(
            vault, client_slug="acme-dental", name="canary", kind="password", secret=canary
        )
        host = await inv.create_host(
            "acme-dental", "main-office", "h", address="h", credential="canary"
        )
        secret = await get_secret(vault, cred)
        logging.getLogger("mssp.test").info("using %s for %s", secret, host.full_name)
        await rotate_data_key(vault)
        await replace_secret(vault, "acme-dental/canary", canary)
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(old_level)
    forms = _encodings(canary)
    # every row of every table, as the database returns it
    conn = connections.get("default")
    for table in ("client", "site", "host", "credential", "host_key"):
        rows = await conn.execute_query_dict(f'SELECT * FROM "{table}"')
        dump = repr(rows).encode()
        assert not [f for f in forms if f in dump], table
    # the files: database, WAL, config folder (vault header), logs
    files = [p for p in Path(db.config_dir).rglob("*") if p.is_file()]
    files += [p for p in Path(db.data_dir).rglob("*") if p.is_file()]
    assert (db.log_dir / "mssp.log").stat().st_size > 0
    if not db.is_postgres:
        assert db.db_path in files and Path(str(db.db_path) + "-wal").exists()
    if db.is_postgres:
        files += await _postgres_files(conn)
    for path in set(files):
        data = path.read_bytes()
        assert not [f for f in forms if f in data], path


async def _postgres_files(conn) -> list[Path]:
    """This database's heap files and the newest WAL segments, flushed by a checkpoint."""
    await conn.execute_script("CHECKPOINT")
    [row] = await conn.execute_query_dict(
        "SELECT current_setting('data_directory') AS dir, oid FROM pg_database "
        "WHERE datname = current_database()"
    )
    data_dir = Path(row["dir"])
    heap = [p for p in (data_dir / "base" / str(row["oid"])).iterdir() if p.is_file()]
    wal = sorted(
        (p for p in (data_dir / "pg_wal").iterdir() if p.is_file()), key=lambda p: p.stat().st_mtime
    )[-3:]
    assert heap and wal
    return heap + wal


async def test_rotation_interrupted_after_new_key_stays_readable(
    db: Settings, vault: Vault
) -> None:
    """A crash between adding the new data key and re-encrypting loses nothing; rerun finishes."""
    cred = await add_credential(vault, client_slug=None, name="c", kind="password", secret="s")
    vault.add_data_key()  # step 1 done, then the process "dies"
    reopened = Vault.unlock(db.vault_path, PASS)
    assert reopened.key_versions == (1, 2)
    assert (await get_secret(reopened, cred)).reveal() == "s"
    assert await rotate_data_key(reopened) == 1
    final = Vault.unlock(db.vault_path, PASS)
    assert final.key_versions == (3,)
    assert (await get_secret(final, cred)).reveal() == "s"


@pytest.mark.parametrize("steps", range(1, 12))
async def test_a_cancel_while_pinning_never_wedges_the_database(db: Settings, steps: int) -> None:
    """A run's immediate cancel can land while a host's first connection pins its key. tortoise
    holds its SQLite connection lock from BEGIN to COMMIT; a cancel inside BEGIN used to leave it
    held, and every later transaction of the process (the run's final states) waited forever."""
    await _acme()
    rec = await inv.create_host("acme-dental", "main-office", "h", address="h")
    info = HostKeyInfo("ssh-ed25519", ED25519, fingerprint(ED25519))
    task = asyncio.ensure_future(DbHostKeyStore().pin(rec, info))
    for _ in range(steps):  # cancel at a different point of the transaction each time
        await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    async with asyncio.timeout(10):
        async with write_transaction():
            pass
        for _ in range(200):  # the pin finishes on its own (it is recorded, audited)
            if await DbHostKeyStore().pinned(rec):
                break
            await asyncio.sleep(0.01)
    assert await DbHostKeyStore().pinned(rec) == [ED25519]
