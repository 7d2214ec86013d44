"""The lab's secrets on disk: its SSH client key, the hosts' admin password, per-host host keys.

All are kept across `lab up`/`lab down` (0600 files in the lab dir), so inventory credentials,
pinned host keys and known_hosts entries stay valid when the lab restarts.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from mssp.config import Settings
from mssp.errors import LabError
from mssp.lab.state import admin_password_file, client_key_file


@dataclass(frozen=True)
class LabKeys:
    """The lab's client key (root and admin log in with it) and the admin password."""

    private_key: str
    public_key: str
    admin_password: str


def new_key() -> tuple[str, str]:
    key = asyncssh.generate_private_key("ssh-ed25519")
    return (
        key.export_private_key("openssh").decode(),
        key.export_public_key("openssh").decode().strip(),
    )


def host_key(path: Path) -> tuple[str, str]:
    """A host's ed25519 key, kept across restarts so pins and known_hosts stay valid."""
    if path.exists():
        try:
            key = asyncssh.import_private_key(path.read_text())
            return path.read_text(), key.export_public_key("openssh").decode().strip()
        except (asyncssh.KeyImportError, ValueError):
            pass  # unreadable: make a new one
    private, public = new_key()
    write_secret(path, private)
    return private, public


def lab_keys(settings: Settings) -> LabKeys:
    """Load the lab's client key and admin password, creating them (0600) the first time."""
    key_file, pw_file = client_key_file(settings), admin_password_file(settings)
    if not key_file.exists():
        private, _ = new_key()
        write_secret(key_file, private)
    if not pw_file.exists():
        write_secret(pw_file, secrets.token_urlsafe(18))
    private = key_file.read_text()
    try:
        public = asyncssh.import_private_key(private).export_public_key("openssh").decode()
    except (asyncssh.KeyImportError, ValueError):
        raise LabError(f"{key_file} is not a valid private key; remove it") from None
    return LabKeys(private, public.strip(), pw_file.read_text().strip())


def write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
