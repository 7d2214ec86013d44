"""SSH host-key policy: pinned keys and CA keys as asyncssh trust lists, first-contact decisions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncssh

from mssp.config import HOST_KEY_POLICIES
from mssp.connectors.base import HostKeyInfo
from mssp.errors import ConfigError


def parse_public_key(text: str, *, what: str = "public key") -> asyncssh.SSHKey:
    """An OpenSSH one-line public key ('<alg> <base64> [comment]'), or a ConfigError.

    A known_hosts style '@cert-authority <patterns> <alg> <base64>' line is accepted for CA keys.
    """
    fields = text.strip().split()
    if fields and fields[0] == "@cert-authority":
        fields = fields[2:]
    try:
        return asyncssh.import_public_key(" ".join(fields[:2]))
    except (asyncssh.KeyImportError, ValueError, IndexError):
        # Never echo the text: a confused caller might have passed a private key.
        raise ConfigError(f"invalid {what} (expected an OpenSSH one-line public key)") from None


def openssh_line(key: asyncssh.SSHKey) -> str:
    """'<algorithm> <base64>' without comment."""
    return " ".join(key.export_public_key("openssh").decode("ascii").split()[:2])


def host_key_info(key: asyncssh.SSHKey) -> HostKeyInfo:
    line = openssh_line(key)
    return HostKeyInfo(
        algorithm=line.split()[0],
        public_key=line,
        fingerprint=key.get_fingerprint("sha256"),
    )


@dataclass(frozen=True)
class TrustLists:
    """What asyncssh's ``known_hosts=`` receives: trusted host keys, trusted CA keys, revoked."""

    host_keys: tuple[asyncssh.SSHKey, ...]
    ca_keys: tuple[asyncssh.SSHKey, ...]

    def as_known_hosts(self) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list]:
        return list(self.host_keys), list(self.ca_keys), []


def trust_lists(pinned: Sequence[str], cas: Sequence[str]) -> TrustLists:
    return TrustLists(
        host_keys=tuple(parse_public_key(k, what="pinned host key") for k in pinned),
        ca_keys=tuple(parse_public_key(k, what="SSH CA key") for k in cas),
    )


class HostKeyDecider:
    """Decides on a host key that matched neither a pinned key nor a trusted CA.

    asyncssh asks ``validate_host_public_key`` only for such keys, during key exchange and so
    before any authentication request: refusing here means no credential is ever offered.
    """

    def __init__(self, policy: str, has_pins: bool) -> None:
        if policy not in HOST_KEY_POLICIES:
            raise ConfigError(f"host key policy must be one of {', '.join(HOST_KEY_POLICIES)}")
        self.policy = policy
        self.has_pins = has_pins
        #: a first-contact key accepted under accept-new, to be pinned by the caller
        self.accepted_new: asyncssh.SSHKey | None = None
        #: the key the host presented when it was refused
        self.refused: asyncssh.SSHKey | None = None

    def decide(self, key: asyncssh.SSHKey) -> bool:
        if not self.has_pins and self.policy == "accept-new":
            self.accepted_new = key
            return True
        self.refused = key
        return False

    def refusal_message(self, reason: str = "") -> str:
        if self.refused is None:
            # asyncssh refused a host certificate itself (untrusted CA, expired, wrong principal)
            return f"the host's certificate was refused ({reason}); no credential was sent"
        presented = self.refused.get_fingerprint("sha256")
        if self.has_pins:
            return (
                f"host key changed: the host presented {presented}, which differs from the pinned "
                "key; no credential was sent. If the host was really reinstalled, remove the old "
                "pin and connect again."
            )
        return f"unknown host key {presented} refused (host key policy is strict)"
