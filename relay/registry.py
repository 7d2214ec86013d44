"""The relay's registry file: core keys, sites, agent public keys, admission hashes, revocations.

A small JSON file written atomically (temp file, fsync, rename). It holds nothing secret: public
keys, hashes of single-use admission secrets, and the agents' opaque key proofs (HMACs the relay
cannot verify or forge). A running relay holds an exclusive lock so the host CLI cannot edit the
file behind its back.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from relay import protocol
from relay.errors import RegistryError, RelayProtocolError, SiteRevokedError, TokenError

_UNREADABLE = (OSError, ValueError, KeyError, TypeError, AttributeError, RelayProtocolError)


@dataclass(frozen=True)
class PendingAdmission:
    """A registered, not yet used admission (one join token)."""

    hash: str
    expires_at: float


@dataclass(frozen=True)
class SiteRecord:
    """What the relay knows about one site."""

    site_id: str
    agent_key: str | None = None
    proof: str | None = None
    """Opaque to the relay: HMAC under the binding secret, verified by the core."""
    joined_at: float | None = None
    revoked: bool = False
    pending: PendingAdmission | None = None


@dataclass
class RegistryData:
    cores: list[str] = field(default_factory=list)
    sites: dict[str, SiteRecord] = field(default_factory=dict)


class Registry:
    """Load, query and atomically update the registry file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None
        self.data = self._load()

    # locking -------------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the exclusive lock (a running relay, or one CLI edit)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RegistryError(
                f"{self.path} is in use by a running relay; stop it first, or make the change "
                "through the core's admin channel"
            ) from None
        self._lock_fd = fd
        self.data = self._load()

    def unlock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # persistence ---------------------------------------------------------------------------
    def _load(self) -> RegistryData:
        if not self.path.exists():
            return RegistryData()
        try:
            raw = json.loads(self.path.read_text())
            if not isinstance(raw, dict) or raw.get("version") != 1:
                raise ValueError("unknown version")
            cores = [protocol.ed25519_public_key(k) for k in raw["cores"]]
            sites: dict[str, SiteRecord] = {}
            for site_id, rec in raw["sites"].items():
                pending = rec.get("pending")
                sites[protocol.site_id(site_id)] = SiteRecord(
                    site_id=site_id,
                    agent_key=(
                        protocol.ed25519_public_key(rec["agent_key"])
                        if rec.get("agent_key")
                        else None
                    ),
                    proof=rec.get("proof"),
                    joined_at=rec.get("joined_at"),
                    revoked=bool(rec.get("revoked", False)),
                    pending=PendingAdmission(**pending) if pending else None,
                )
        except _UNREADABLE as exc:
            raise RegistryError(f"cannot read the relay registry {self.path}: {exc}") from None
        return RegistryData(cores, sites)

    def save(self) -> None:
        body: dict[str, Any] = {
            "version": 1,
            "cores": self.data.cores,
            "sites": {
                sid: {k: v for k, v in asdict(rec).items() if k != "site_id"}
                for sid, rec in sorted(self.data.sites.items())
            },
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(body, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    # operations ----------------------------------------------------------------------------
    def add_core(self, public_key: str) -> str:
        try:
            key = protocol.ed25519_public_key(public_key.strip())
        except RelayProtocolError as exc:
            raise RegistryError(f"core key refused: {exc}") from None
        if key not in self.data.cores:
            self.data.cores.append(key)
            self.save()
        return key

    def remove_core(self, public_key: str) -> None:
        key = protocol.ed25519_public_key(public_key.strip())
        if key not in self.data.cores:
            raise RegistryError("no such core key")
        self.data.cores.remove(key)
        self.save()

    def site(self, site_id: str) -> SiteRecord | None:
        return self.data.sites.get(site_id)

    def register_admission(self, site_id: str, admission_hash: str, expires_at: float) -> None:
        """A new join token for ``site_id``: replaces any unused one, clears a revocation."""
        self.expire_pending()
        rec = self.data.sites.get(site_id) or SiteRecord(site_id)
        self.data.sites[site_id] = replace(
            rec, revoked=False, pending=PendingAdmission(admission_hash, expires_at)
        )
        self.save()

    def consume_admission(
        self, site_id: str, admission_hash: str, agent_key: str, proof: str, *, now: float
    ) -> SiteRecord:
        """Check a join against the pending admission and use it up (single use)."""
        rec = self.data.sites.get(site_id)
        if rec is None or rec.pending is None:
            # Same message for unknown site, reuse and wrong site: tells a prober nothing.
            raise TokenError("join refused: token unknown, already used, or for another site")
        if rec.revoked:
            raise SiteRevokedError("join refused: the site is revoked")
        if not hmac.compare_digest(rec.pending.hash, admission_hash):
            raise TokenError("join refused: token unknown, already used, or for another site")
        if rec.pending.expires_at <= now:
            self.data.sites[site_id] = replace(rec, pending=None)
            self.save()
            raise TokenError("join refused: token expired")
        new = replace(rec, agent_key=agent_key, proof=proof, joined_at=now, pending=None)
        self.data.sites[site_id] = new
        self.save()
        return new

    def revoke(self, site_id: str) -> SiteRecord:
        rec = self.data.sites.get(site_id) or SiteRecord(site_id)
        new = replace(rec, revoked=True, pending=None)
        self.data.sites[site_id] = new
        self.save()
        return new

    def agent_key(self, site_id: str) -> str | None:
        rec = self.data.sites.get(site_id)
        if rec is None or rec.revoked:
            return None
        return rec.agent_key

    def expire_pending(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        changed = False
        for sid, rec in list(self.data.sites.items()):
            if rec.pending and rec.pending.expires_at <= now:
                self.data.sites[sid] = replace(rec, pending=None)
                changed = True
        if changed:
            self.save()
