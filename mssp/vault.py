"""The vault: secrets under AES-256-GCM with a data key wrapped by an Argon2id-derived key.

Layout. ``vault.json`` (settings.vault_path) holds a header: the Argon2id parameters and salt, a
random vault id, and one or more random 256-bit *data keys*, each wrapped (AES-256-GCM) by the key
derived from the passphrase. The header itself is the wrapping's associated data, so editing the
parameters, the id or a key version makes unlocking fail. The database holds only ciphertexts:

    blob = b"\\x01" || key_version (4 bytes, big endian) || nonce (12) || AES-GCM(ciphertext + tag)
    AAD  = "mssp-vault/1" NUL vault_id NUL table NUL row_id NUL field NUL key_version

so a ciphertext copied to another row, field, table, vault or key version does not decrypt, and a
flipped bit anywhere fails the tag. Decryption failures are ``VaultError`` and carry no secret.

Argon2id parameters default to RFC 9106's second recommendation (64 MiB, 3 passes, 4 lanes), above
OWASP's minimum (19 MiB, 2 passes, 1 lane). A header below that floor is refused, and so is one
above a ceiling (a tampered header must not make us allocate gigabytes).

Changing the passphrase (``change_passphrase``) rewraps the data keys only: nothing in the database
changes. Every header change is written to a new file, fsynced, renamed over the old one, and the
directory fsynced, under a lock file: a crash leaves the old or the new header, never half of one.
Rotating the data key (``Vault.add_data_key`` + re-encrypting rows + ``retire_data_keys``, driven by
mssp.store.credentials) keeps old keys in the header until every row uses the new one.

Unattended unlock (the nightly daemon), in ``unlock_from_settings``'s order:
1. ``MSSP_VAULT_PASSPHRASE`` in the environment. Trade-off: convenient for services and CI, but
   the value is readable by anyone who can read the process environment (root, the same user via
   /proc/PID/environ) and is inherited by child processes unless removed; use it for service
   managers that inject secrets, not in shell profiles.
2. ``vault_key_file`` from the settings: a file holding the passphrase, owned by this user with
   mode 0600 (looser modes are refused, as OpenSSH refuses loose private keys). Trade-off: whoever
   can read that file (this user, root, backups of the home directory) has every credential; keep
   it off backed-up or shared disks, or on a different disk than the database.
3. An interactive prompt.
Both unattended ways turn the passphrase into "possession of this account": a stolen database plus
config folder *without* the key file or environment still yields nothing.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hmac
import json
import os
import stat
import struct
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from mssp.errors import VaultError

FORMAT = "mssp-vault"
FORMAT_VERSION = 1
BLOB_VERSION = 1
_BLOB_HEADER = struct.Struct(">BI")
_NONCE = 12
PASSPHRASE_ENV = "MSSP_VAULT_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)
MIN_PASSPHRASE_LENGTH = 8


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost parameters, stored in the vault header."""

    memory_cost: int = 65536
    """KiB of memory per derivation."""
    iterations: int = 3
    lanes: int = 4

    def check(self) -> None:
        """Refuse parameters below OWASP's floor or above a sane ceiling."""
        if not (FLOOR.memory_cost <= self.memory_cost <= CEILING.memory_cost):
            raise VaultError(
                f"Argon2id memory cost {self.memory_cost} KiB is outside the allowed range"
            )
        if not (FLOOR.iterations <= self.iterations <= CEILING.iterations):
            raise VaultError(f"Argon2id iterations {self.iterations} are outside the allowed range")
        if not (FLOOR.lanes <= self.lanes <= CEILING.lanes):
            raise VaultError(f"Argon2id lanes {self.lanes} are outside the allowed range")


DEFAULT_KDF = KdfParams()
#: OWASP password storage cheat sheet: m=19 MiB, t=2, p=1 is the minimum configuration
FLOOR = KdfParams(memory_cost=19456, iterations=2, lanes=1)
#: a tampered header must not make unlocking allocate more than this (1 GiB) or run for minutes
CEILING = KdfParams(memory_cost=1024 * 1024, iterations=64, lanes=64)


class Secret:
    """A secret value that never shows itself in repr, str, format, logs or pickles."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes | str) -> None:
        self._value = value.encode("utf-8") if isinstance(value, str) else bytes(value)

    def reveal(self) -> str:
        """The value as text, at the moment of use."""
        try:
            return self._value.decode("utf-8")
        except UnicodeDecodeError:
            raise VaultError("the secret is binary, not text") from None

    def reveal_bytes(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")

    def __len__(self) -> int:
        return len(self._value)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not base64 text")
    return base64.b64decode(text.encode("ascii"), validate=True)


def _derive(passphrase: str, salt: bytes, params: KdfParams) -> bytes:
    params.check()
    kdf = Argon2id(
        salt=salt,
        length=32,
        iterations=params.iterations,
        lanes=params.lanes,
        memory_cost=params.memory_cost,
    )
    return kdf.derive(passphrase.encode("utf-8"))


def _wrap_aad(header: Mapping[str, Any], version: int) -> bytes:
    # The authenticated part of the header: everything but the wrapped keys themselves.
    bound = {
        "format": header["format"],
        "format_version": header["format_version"],
        "vault_id": header["vault_id"],
        "kdf": header["kdf"],
        "key_version": version,
    }
    return json.dumps(bound, sort_keys=True, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class _Header:
    raw: dict[str, Any]
    params: KdfParams
    salt: bytes
    vault_id: str
    current: int
    wrapped: dict[int, bytes]


def _parse_header(path: Path) -> _Header:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VaultError(f"no vault at {path}; run `mssp init` first") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VaultError(f"cannot read the vault file {path}: {type(exc).__name__}") from None
    try:
        raw = json.loads(text)
        if raw.get("format") != FORMAT:
            raise ValueError("not an mssp vault")
        if raw.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported vault format version {raw.get('format_version')!r}")
        kdf = raw["kdf"]
        if kdf.get("name") != "argon2id":
            raise ValueError("unsupported key derivation")
        params = KdfParams(
            memory_cost=int(kdf["memory_cost"]),
            iterations=int(kdf["iterations"]),
            lanes=int(kdf["lanes"]),
        )
        salt = _unb64(kdf["salt"])
        if len(salt) < 16:
            raise ValueError("salt too short")
        wrapped = {int(v): _unb64(blob) for v, blob in raw["keys"].items()}
        current = int(raw["current_key"])
        vault_id = str(raw["vault_id"])
        if current not in wrapped:
            raise ValueError("the current key is missing")
    except VaultError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VaultError(f"the vault file {path} is malformed: {exc}") from None
    params.check()
    return _Header(raw, params, salt, vault_id, current, wrapped)


def _wrap(kek: bytes, header: Mapping[str, Any], version: int, data_key: bytes) -> str:
    nonce = os.urandom(_NONCE)
    return _b64(nonce + AESGCM(kek).encrypt(nonce, data_key, _wrap_aad(header, version)))


def _unwrap_all(kek: bytes, header: _Header) -> dict[int, bytes]:
    keys = {}
    for version, blob in header.wrapped.items():
        try:
            keys[version] = AESGCM(kek).decrypt(
                blob[:_NONCE], blob[_NONCE:], _wrap_aad(header.raw, version)
            )
        except (InvalidTag, ValueError):
            raise VaultError(
                "wrong vault passphrase (or the vault file was altered)", title="Vault locked"
            ) from None
    return keys


def _write_atomically(path: Path, content: str) -> None:
    """New file, fsync, rename over the old one, fsync the directory: a crash leaves one or the
    other whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def _header_lock(path: Path) -> Iterator[None]:
    """Serialise header changes between processes (passphrase change vs key rotation)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _check_new_passphrase(passphrase: str) -> None:
    if len(passphrase) < MIN_PASSPHRASE_LENGTH:
        raise VaultError(f"the passphrase must have at least {MIN_PASSPHRASE_LENGTH} characters")


def _new_header(
    vault_id: str,
    params: KdfParams,
    salt: bytes,
    kek: bytes,
    keys: Mapping[int, bytes],
    current: int,
) -> dict[str, Any]:
    header: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vault_id": vault_id,
        "kdf": {
            "name": "argon2id",
            "salt": _b64(salt),
            "memory_cost": params.memory_cost,
            "iterations": params.iterations,
            "lanes": params.lanes,
        },
        "current_key": current,
    }
    header["keys"] = {str(v): _wrap(kek, header, v, k) for v, k in sorted(keys.items())}
    return header


def _dump(header: Mapping[str, Any]) -> str:
    return json.dumps(header, indent=2, sort_keys=True) + "\n"


class Vault:
    """An unlocked vault: encrypts and decrypts field values bound to their row."""

    def __init__(
        self, path: Path, vault_id: str, keys: dict[int, bytes], current: int, kek: bytes
    ) -> None:
        self._path = path
        self._vault_id = vault_id
        self._keys = {v: AESGCM(k) for v, k in keys.items()}
        self._current = current
        # kept to wrap new data keys during rotation; as sensitive as the data keys themselves
        self._kek = kek

    def __repr__(self) -> str:
        return f"Vault({str(self._path)!r}, key_version={self._current})"

    @property
    def path(self) -> Path:
        return self._path

    @property
    def key_version(self) -> int:
        """The version of the data key new ciphertexts are made with."""
        return self._current

    @property
    def key_versions(self) -> tuple[int, ...]:
        return tuple(sorted(self._keys))

    @classmethod
    def create(
        cls, path: Path, passphrase: str, *, kdf: KdfParams = DEFAULT_KDF, overwrite: bool = False
    ) -> Vault:
        """Create a new vault header with a fresh random data key (version 1)."""
        _check_new_passphrase(passphrase)
        kdf.check()
        with _header_lock(path):
            if path.exists() and not overwrite:
                raise VaultError(f"a vault already exists at {path}")
            salt = os.urandom(16)
            kek = _derive(passphrase, salt, kdf)
            data_key = AESGCM.generate_key(bit_length=256)
            vault_id = uuid.uuid4().hex
            _write_atomically(path, _dump(_new_header(vault_id, kdf, salt, kek, {1: data_key}, 1)))
        return cls(path, vault_id, {1: data_key}, 1, kek)

    @classmethod
    def unlock(cls, path: Path, passphrase: str) -> Vault:
        """Open the vault; VaultError on a wrong passphrase or an altered header."""
        header = _parse_header(path)
        kek = _derive(passphrase, header.salt, header.params)
        keys = _unwrap_all(kek, header)
        return cls(path, header.vault_id, keys, header.current, kek)

    def _aad(self, table: str, row_id: int, field: str, version: int) -> bytes:
        for name, value in (("table", table), ("field", field)):
            if not value or "\0" in value:
                raise VaultError(f"invalid {name} for a vault ciphertext")
        if isinstance(row_id, bool) or not isinstance(row_id, int) or row_id <= 0:
            raise VaultError("a vault ciphertext needs the positive id of its row")
        parts = ("mssp-vault/1", self._vault_id, table, str(row_id), field, str(version))
        return "\0".join(parts).encode("utf-8")

    def encrypt(self, plaintext: bytes, *, table: str, row_id: int, field: str) -> bytes:
        """Encrypt with the current data key, bound to (table, row_id, field, key version)."""
        if isinstance(plaintext, str):
            plaintext = plaintext.encode("utf-8")
        version = self._current
        nonce = os.urandom(_NONCE)
        body = self._keys[version].encrypt(
            nonce, bytes(plaintext), self._aad(table, row_id, field, version)
        )
        return _BLOB_HEADER.pack(BLOB_VERSION, version) + nonce + body

    def blob_key_version(self, blob: bytes) -> int:
        """The data key version a ciphertext was made with (not authenticated until decrypted)."""
        if len(blob) < _BLOB_HEADER.size + _NONCE + 16 or blob[0] != BLOB_VERSION:
            raise VaultError("the ciphertext is malformed")
        return _BLOB_HEADER.unpack_from(blob)[1]

    def decrypt(self, blob: bytes, *, table: str, row_id: int, field: str) -> Secret:
        """Decrypt a ciphertext made for exactly this row and field; VaultError otherwise."""
        blob = bytes(blob)
        version = self.blob_key_version(blob)
        aead = self._keys.get(version)
        if aead is None:
            raise VaultError(
                f"the ciphertext uses data key version {version}, unknown to this vault"
            )
        start = _BLOB_HEADER.size
        try:
            plain = aead.decrypt(
                blob[start : start + _NONCE],
                blob[start + _NONCE :],
                self._aad(table, row_id, field, version),
            )
        except InvalidTag:
            raise VaultError(
                f"the ciphertext of {table} {row_id} {field} does not verify "
                "(altered, or moved from another row)",
                title="Vault integrity error",
            ) from None
        return Secret(plain)

    def add_data_key(self) -> int:
        """Add a fresh data key as the new current version and persist the header. Old keys stay
        until ``retire_data_keys`` (rows still encrypted with them must stay readable)."""
        with _header_lock(self._path):
            header = _parse_header(self._path)
            if header.vault_id != self._vault_id:
                raise VaultError("the vault file was replaced by another vault")
            keys = _unwrap_all(self._kek, header)
            version = max(keys) + 1
            keys[version] = AESGCM.generate_key(bit_length=256)
            new = _new_header(self._vault_id, header.params, header.salt, self._kek, keys, version)
            _write_atomically(self._path, _dump(new))
        self._keys = {v: AESGCM(k) for v, k in keys.items()}
        self._current = version
        return version

    def retire_data_keys(self, keep: set[int]) -> None:
        """Remove data keys not in ``keep`` (the current key is always kept)."""
        with _header_lock(self._path):
            header = _parse_header(self._path)
            keys = _unwrap_all(self._kek, header)
            kept = {v: k for v, k in keys.items() if v in keep or v == header.current}
            new = _new_header(
                self._vault_id, header.params, header.salt, self._kek, kept, header.current
            )
            _write_atomically(self._path, _dump(new))
        self._keys = {v: AESGCM(k) for v, k in kept.items()}


def change_passphrase(path: Path, old: str, new: str, *, kdf: KdfParams | None = None) -> None:
    """Rewrap the data keys under a new passphrase (fresh salt). The database is not touched.

    Raises VaultError, changing nothing, when ``old`` is wrong."""
    _check_new_passphrase(new)
    with _header_lock(path):
        header = _parse_header(path)
        old_kek = _derive(old, header.salt, header.params)
        keys = _unwrap_all(old_kek, header)
        params = kdf or (header.params if _stronger(header.params, DEFAULT_KDF) else DEFAULT_KDF)
        params.check()
        salt = os.urandom(16)
        kek = _derive(new, salt, params)
        new_header = _new_header(header.vault_id, params, salt, kek, keys, header.current)
        _write_atomically(path, _dump(new_header))


def _stronger(a: KdfParams, b: KdfParams) -> bool:
    return a.memory_cost >= b.memory_cost and a.iterations >= b.iterations and a.lanes >= b.lanes


def read_key_file(path: Path) -> str:
    """The passphrase from a key file owned by this user with no group/other permissions."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise VaultError(f"vault key file {path} does not exist") from None
    except OSError as exc:
        raise VaultError(f"cannot open vault key file {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise VaultError(f"vault key file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise VaultError(
                f"vault key file {path} has mode {stat.S_IMODE(info.st_mode):04o}; it must not be "
                f"readable by others (chmod 600 {path})"
            )
        if info.st_uid != os.getuid():
            raise VaultError(f"vault key file {path} is not owned by the current user")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(64 * 1024)
    finally:
        os.close(fd)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise VaultError(f"vault key file {path} is not UTF-8 text") from None
    # one trailing newline is how editors and `echo` write files; it is not part of the passphrase
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise VaultError(f"vault key file {path} is empty")
    return text


def passphrase_from_settings(
    settings: Any,
    *,
    prompt: Callable[[], str] | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """The passphrase from MSSP_VAULT_PASSPHRASE, else the key file, else the prompt."""
    env = os.environ if env is None else env
    value = env.get(PASSPHRASE_ENV)
    if value:
        return value
    key_file = getattr(settings, "vault_key_file", None)
    if key_file is not None:
        return read_key_file(Path(key_file))
    if prompt is not None:
        return prompt()
    raise VaultError(
        f"the vault is locked: set {PASSPHRASE_ENV}, configure vault_key_file, "
        "or run interactively",
        title="Vault locked",
    )


def unlock_from_settings(
    settings: Any,
    *,
    prompt: Callable[[], str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Vault:
    """Unlock settings.vault_path: env MSSP_VAULT_PASSPHRASE, then the key file, then prompt."""
    path = Path(settings.vault_path)
    if not path.exists():
        raise VaultError(f"no vault at {path}; run `mssp init` first")
    return Vault.unlock(path, passphrase_from_settings(settings, prompt=prompt, env=env))
