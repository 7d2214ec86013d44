"""Pinned SSH host keys in the database: the HostKeyStore the connection manager checks against.

Implements mssp.connections.HostKeyStore structurally. Keys are stored in OpenSSH one-line form
("<algorithm> <base64>", no comment), one row per key; host CA keys are rows with ``is_ca``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from dataclasses import dataclass
from datetime import datetime

from mssp import audit
from mssp.connectors.base import HostKeyInfo
from mssp.db import to_completion
from mssp.errors import NotFoundError, UsageError
from mssp.inventory import HostRecord
from mssp.models.inventory import Host, HostKey
from mssp.store import write_transaction


@dataclass(frozen=True)
class PinnedKey:
    """A pinned key as `mssp host show` prints it."""

    algorithm: str
    public_key: str
    fingerprint: str
    is_ca: bool
    first_seen: datetime | None


def normalise_public_key(text: str) -> tuple[str, str]:
    """'ssh-ed25519 AAAA... comment' -> ('ssh-ed25519', 'ssh-ed25519 AAAA...'); UsageError if it
    is not one OpenSSH public key line."""
    parts = text.strip().split()
    if len(parts) < 2:
        raise UsageError("not an OpenSSH public key line")
    algorithm, body = parts[0], parts[1]
    try:
        blob = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError("the public key is not valid base64") from None
    # the blob starts with its own algorithm name, length-prefixed
    name_len = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else -1
    if name_len <= 0 or blob[4 : 4 + name_len].decode("ascii", "replace") != algorithm:
        raise UsageError("the public key's algorithm does not match its data")
    return algorithm, f"{algorithm} {body}"


def fingerprint(public_key: str) -> str:
    """SHA256 fingerprint as OpenSSH prints it."""
    body = public_key.split()[1]
    digest = hashlib.sha256(base64.b64decode(body)).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


async def _host_id(host: HostRecord) -> int:
    if host.id is not None:
        return host.id
    row = await Host.get_or_none(
        site__client__slug=host.client, site__slug=host.site, name=host.name
    )
    if row is None:
        raise NotFoundError(f"no host {host.full_name}")
    return row.id


class DbHostKeyStore:
    """Host key pins in the database (implements mssp.connections.HostKeyStore).

    A fleet run asks for the pins of hundreds of hosts at once: they are read in one query and
    kept for ``cache_seconds``; a pin or forget made through this store clears the cache.
    """

    def __init__(self, *, cache_seconds: float = 30.0) -> None:
        self._cache_seconds = cache_seconds
        self._pins: dict[int, list[str]] | None = None
        self._loaded_at = 0.0

    async def _all_pins(self) -> dict[int, list[str]]:
        now = time.monotonic()
        if self._pins is None or now - self._loaded_at > self._cache_seconds:
            pins: dict[int, list[str]] = {}
            rows = (
                await HostKey.filter(is_ca=False)
                .order_by("id")
                .values_list("host_id", "public_key")
            )
            for host_id, public_key in rows:
                pins.setdefault(host_id, []).append(public_key)
            self._pins, self._loaded_at = pins, now
        return self._pins

    async def pinned(self, host: HostRecord) -> list[str]:
        """The host's pinned keys (not CA keys), oldest first, in OpenSSH form."""
        host_id = await _host_id(host)
        cached = (await self._all_pins()).get(host_id)
        if cached:
            return list(cached)
        # "No pin" is what lets a first contact pin a key (accept-new): never trust a cached
        # "none", another process may have pinned this host since the cache was read.
        rows = await HostKey.filter(host_id=host_id, is_ca=False).order_by("id")
        return [row.public_key for row in rows]

    async def trusted_cas(self, host: HostRecord) -> list[str]:
        """Host certificate authorities trusted for this host."""
        host_id = await _host_id(host)
        rows = await HostKey.filter(host_id=host_id, is_ca=True).order_by("id")
        return [row.public_key for row in rows]

    async def pin(self, host: HostRecord, key: HostKeyInfo, *, is_ca: bool = False) -> None:
        """Pin a key (idempotent: pinning a key already pinned changes nothing).

        Audited in the same transaction, both or neither: ``hostkey.pin`` for a host's first
        key, ``hostkey.repin`` when it already trusts others. AuditError refuses the pin."""
        await to_completion(self._pin(host, key, is_ca))

    async def _pin(self, host: HostRecord, key: HostKeyInfo, is_ca: bool) -> None:
        algorithm, public_key = normalise_public_key(key.public_key)
        print_ = key.fingerprint or fingerprint(public_key)
        self._pins = None
        async with write_transaction():
            host_id = await _host_id(host)
            if await HostKey.filter(host_id=host_id, public_key=public_key).exists():
                return
            earlier = await HostKey.filter(host_id=host_id).values_list("fingerprint", flat=True)
            await HostKey.create(
                host_id=host_id,
                algorithm=algorithm,
                public_key=public_key,
                fingerprint=print_,
                is_ca=is_ca,
            )
            await audit.record(
                "hostkey.repin" if earlier else "hostkey.pin",
                client=host.client,
                target=host.full_name,
                detail={
                    "algorithm": algorithm,
                    "fingerprint": print_,
                    "ca": is_ca,
                    "already_trusted": sorted(earlier),
                },
            )

    async def forget(self, host: HostRecord) -> int:
        """Remove every pin of a host (after a legitimate re-install); returns how many.

        Audited in the same transaction (``hostkey.forget``); AuditError refuses it."""
        self._pins = None
        async with write_transaction():
            host_id = await _host_id(host)
            earlier = await HostKey.filter(host_id=host_id).values_list("fingerprint", flat=True)
            count = await HostKey.filter(host_id=host_id).delete()
            if count:
                await audit.record(
                    "hostkey.forget",
                    client=host.client,
                    target=host.full_name,
                    detail={"fingerprints": sorted(earlier)},
                )
            return count

    async def keys(self, host: HostRecord) -> list[PinnedKey]:
        host_id = await _host_id(host)
        return [
            PinnedKey(r.algorithm, r.public_key, r.fingerprint, r.is_ca, r.first_seen)
            for r in await HostKey.filter(host_id=host_id).order_by("id")
        ]
