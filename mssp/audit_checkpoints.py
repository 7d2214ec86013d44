"""Signed checkpoints of the audit chain head, kept off the machine to catch a rewritten history.

A checkpoint is one JSON line: the head's seq and hash, the time, and an Ed25519 signature by the
core's audit signing key (``$config_dir/audit-signing.key``, mode 0600). The public key is printed
by ``mssp audit checkpoint`` so whoever holds the checkpoint file can check it came from this core.
Someone who owns the machine can sign new checkpoints, but cannot change the ones already written
elsewhere: a history rewritten or truncated since then no longer matches them.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mssp.errors import AuditError

KEY_FILE_NAME = "audit-signing.key"


@dataclass(frozen=True)
class Checkpoint:
    """A signed record that the audit chain had ``hash`` at ``seq``."""

    seq: int
    hash: str
    at: str
    public_key: str
    """Base64 raw Ed25519 public key of the signer."""
    signature: str
    """Base64 signature over the signed payload."""

    def payload(self) -> bytes:
        return f"mssp-audit-checkpoint\n{self.seq}\n{self.hash}\n{self.at}".encode()


def load_or_create_key(config_dir: Path) -> Ed25519PrivateKey:
    path = config_dir / KEY_FILE_NAME
    if path.exists():
        if path.stat().st_mode & 0o077:
            raise AuditError(f"{path} must not be readable by others (chmod 600)")
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise AuditError(f"{path} is not an Ed25519 key")
        return key
    config_dir.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return key


def public_key_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def sign(key: Ed25519PrivateKey, seq: int, head_hash: str) -> Checkpoint:
    unsigned = Checkpoint(
        seq=seq,
        hash=head_hash,
        at=datetime.now(UTC).isoformat(timespec="seconds"),
        public_key=public_key_b64(key),
        signature="",
    )
    signature = base64.b64encode(key.sign(unsigned.payload())).decode()
    return Checkpoint(**{**unsigned.__dict__, "signature": signature})


def append(path: Path, checkpoint: Checkpoint) -> None:
    line = json.dumps(checkpoint.__dict__, sort_keys=True) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def read(path: Path, *, trusted_public_key: str | None = None) -> list[Checkpoint]:
    """Parse and check every checkpoint in a file; a forged or garbled one raises AuditError."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"cannot read checkpoints from {path}: {exc}") from None
    out = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            cp = Checkpoint(
                seq=int(raw["seq"]),
                hash=str(raw["hash"]),
                at=str(raw["at"]),
                public_key=str(raw["public_key"]),
                signature=str(raw["signature"]),
            )
            if trusted_public_key is not None and cp.public_key != trusted_public_key:
                raise AuditError(f"{path}:{number}: checkpoint signed by an unknown key")
            pub = Ed25519PublicKey.from_public_bytes(base64.b64decode(cp.public_key))
            pub.verify(base64.b64decode(cp.signature), cp.payload())
        except AuditError:
            raise
        except InvalidSignature:
            raise AuditError(f"{path}:{number}: checkpoint signature is not valid") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditError(f"{path}:{number}: not a checkpoint ({type(exc).__name__})") from None
        out.append(cp)
    return out
