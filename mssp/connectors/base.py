"""The Connector contract every transport (SSH, WinRM, relayed SSH) fulfils; its typed results."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mssp.errors import CommandError


@dataclass(frozen=True)
class CommandResult:
    """What one remote command did. The same fields whether it succeeded or not."""

    command: str
    """The command line as sent (never contains a secret: secrets travel by stdin or env)."""
    exit_status: int | None
    """The exit code; None when the command was killed by a signal or timed out."""
    stdout: str
    """Standard output, decoded as UTF-8 with replacement, at most the output cap."""
    stderr: str
    """Standard error, decoded as UTF-8 with replacement, at most the output cap."""
    duration: float
    """Seconds from sending the command to its exit."""
    truncated: bool = False
    """True when either stream exceeded the cap and bytes were dropped."""
    dropped_bytes: int = 0
    """How many output bytes were counted and dropped beyond the cap."""

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def check(self) -> CommandResult:
        """Return self, or raise CommandError carrying this result when the exit status is not 0."""
        if self.exit_status != 0:
            raise CommandError(f"command exited with status {self.exit_status}", result=self)
        return self


@dataclass(frozen=True)
class TransferResult:
    """A verified file transfer."""

    local_path: Path
    remote_path: str
    size: int
    """Bytes transferred."""
    sha256: str
    """Hex digest, equal on both ends (a mismatch raises TransferError instead)."""
    duration: float


@dataclass(frozen=True)
class HostKeyInfo:
    """The key a host presented, as pinned or to be pinned."""

    algorithm: str
    public_key: str
    """OpenSSH one-line form: '<algorithm> <base64>'."""
    fingerprint: str
    """SHA256:... fingerprint as OpenSSH prints it."""


@dataclass(frozen=True)
class ConnectOptions:
    """How to reach and log in to one host. Built by the connection manager from inventory."""

    host: str
    """The inventory name (client/site/host) used in messages."""
    address: str
    port: int
    username: str
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    """Private key in OpenSSH/PEM text form."""
    private_key_passphrase: str | None = field(default=None, repr=False)
    become_password: str | None = field(default=None, repr=False)
    """Password for sudo; sent through stdin only."""
    pinned_host_keys: tuple[str, ...] = ()
    """OpenSSH-form public keys accepted for this host."""
    trusted_ca_keys: tuple[str, ...] = ()
    """OpenSSH-form CA keys whose host certificates are accepted."""
    host_key_policy: str = "accept-new"
    connect_timeout: float = 10.0
    keepalive_interval: float = 15.0
    output_cap: int = 1024 * 1024
    extra: Mapping[str, str] = field(default_factory=dict)
    """Transport-specific options (winrm scheme, cert pin, auth...)."""


class Connector(abc.ABC):
    """One live connection to one host. Async, safe to share between tasks of one event loop."""

    #: "ssh" or "winrm"
    transport: str = ""

    @abc.abstractmethod
    async def connect(self) -> None:
        """Establish the connection. Raises ConnectError, AuthError or HostKeyError."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection and everything it started. Idempotent."""

    @property
    @abc.abstractmethod
    def is_connected(self) -> bool:
        """True while the connection is believed usable."""

    @abc.abstractmethod
    async def run(
        self,
        command: str,
        *,
        check: bool = False,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        become: bool = False,
    ) -> CommandResult:
        """Run one command. Raises CommandTimeout, CommandError (check=True) or ConnectError."""

    @abc.abstractmethod
    async def put_file(
        self, local: Path, remote: str, *, mode: int | None = None
    ) -> TransferResult:
        """Copy a local file to the host and verify its SHA-256 computed on the far side."""

    @abc.abstractmethod
    async def get_file(self, remote: str, local: Path) -> TransferResult:
        """Copy a file from the host and verify its SHA-256 against one computed on the far side."""

    async def __aenter__(self) -> Connector:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
