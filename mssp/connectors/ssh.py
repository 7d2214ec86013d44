"""The SSH connector (asyncssh): login, host-key policy, commands, verified SFTP, PTY sessions.

Hardening that is on purpose and tested: host keys are always checked (pinned keys, trusted CA
keys, first-contact policy; never ``known_hosts=None``), no agent and no X11 forwarding, no user
``~/.ssh/config`` or default identity files, AES-GCM ciphers first and curve25519 key exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import asyncssh

from mssp.connectors import sshfiles
from mssp.connectors.base import (
    CommandResult,
    ConnectOptions,
    Connector,
    HostKeyInfo,
    TransferResult,
)
from mssp.connectors.ssherrors import map_error
from mssp.connectors.sshexec import execute
from mssp.connectors.sshkeys import HostKeyDecider, host_key_info, trust_lists
from mssp.errors import AuthError, ConnectError, HostKeyError

ENCRYPTION_ALGS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes128-ctr",
)
KEX_ALGS = (
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group14-sha256",
)
KEEPALIVE_COUNT_MAX = 3

HostKeyCallback = Callable[[HostKeyInfo], Awaitable[None] | None]


class _Client(asyncssh.SSHClient):
    """Asks the decider about keys outside the trust lists; notices the connection's end."""

    def __init__(self, decider: HostKeyDecider) -> None:
        self.decider = decider
        self.lost = False

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        return self.decider.decide(key)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


class PtySession:
    """An interactive process on a pseudo-terminal: raw bytes in and out, resizable."""

    def __init__(self, process: asyncssh.SSHClientProcess[bytes]) -> None:
        self._process = process
        self.stdin = process.stdin
        self.stdout = process.stdout

    def write(self, data: bytes) -> None:
        self._process.stdin.write(data)

    async def read(self, size: int = 65536) -> bytes:
        """Up to ``size`` bytes of terminal output; b"" once the process has ended."""
        return await self._process.stdout.read(size)

    def resize(self, cols: int, rows: int) -> None:
        self._process.change_terminal_size(cols, rows)

    async def wait(self, timeout: float | None = None) -> int | None:
        """The exit status (None when ended by a signal)."""
        completed = await self._process.wait(timeout=timeout)
        return None if completed.exit_signal else completed.exit_status

    def close(self) -> None:
        self._process.close()


class SSHConnector(Connector):
    """One asyncssh connection to one host."""

    transport = "ssh"

    def __init__(
        self,
        options: ConnectOptions,
        *,
        tunnel: Any = None,
        on_new_host_key: HostKeyCallback | None = None,
        command_timeout: float | None = None,
    ) -> None:
        self.options = options
        self.tunnel = tunnel
        self.on_new_host_key = on_new_host_key
        self.command_timeout = command_timeout
        self._conn: asyncssh.SSHClientConnection | None = None
        self._client: _Client | None = None
        #: the key the host proved during the last handshake
        self.host_key: HostKeyInfo | None = None

    # ---- connection ----------------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        return self._conn is not None and self._client is not None and not self._client.lost

    async def connect(self) -> None:
        if self.is_connected:
            return
        opts = self.options
        trust = trust_lists(opts.pinned_host_keys, opts.trusted_ca_keys)
        decider = HostKeyDecider(opts.host_key_policy, has_pins=bool(trust.host_keys))
        client = _Client(decider)
        keys = [_private_key(opts)] if opts.private_key else None
        if not keys and opts.password is None:
            raise AuthError(
                "no credential configured (neither a key nor a password)", host=opts.host
            )
        try:
            # asyncssh bounds TCP and login itself; this also bounds a slow tunnel. (Not
            # asyncio.wait_for: on Python 3.11 it can swallow a cancel that arrives as the
            # connection completes, and an immediate cancel of a run must never be lost.)
            async with asyncio.timeout(opts.connect_timeout + 1.0):
                conn = await asyncssh.connect(
                    opts.address,
                    opts.port,
                    tunnel=self.tunnel or (),
                    username=opts.username,
                    client_factory=lambda: client,
                    known_hosts=trust.as_known_hosts(),
                    client_keys=keys,
                    password=opts.password,
                    preferred_auth=_preferred_auth(keys, opts.password),
                    agent_path=None,
                    agent_forwarding=False,
                    x11_forwarding=False,
                    config=None,
                    gss_auth=False,
                    gss_kex=False,
                    host_based_auth=False,
                    encryption_algs=ENCRYPTION_ALGS,
                    kex_algs=KEX_ALGS,
                    connect_timeout=opts.connect_timeout,
                    login_timeout=opts.connect_timeout,
                    keepalive_interval=opts.keepalive_interval,
                    keepalive_count_max=KEEPALIVE_COUNT_MAX,
                )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise HostKeyError(decider.refusal_message(exc.reason), host=opts.host) from None
        except asyncssh.PermissionDenied:
            await self._pin_new_key(decider)
            raise AuthError("the host refused the credentials", host=opts.host) from None
        except Exception as exc:
            raise map_error(exc, opts.host, during="connect") from None
        self._conn, self._client = conn, client
        server_key = conn.get_server_host_key()
        self.host_key = host_key_info(server_key) if server_key else None
        await self._pin_new_key(decider)

    async def _pin_new_key(self, decider: HostKeyDecider) -> None:
        if decider.accepted_new is None or self.on_new_host_key is None:
            return
        outcome = self.on_new_host_key(host_key_info(decider.accepted_new))
        if inspect.isawaitable(outcome):
            await outcome

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        conn.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.wait_closed(), 5)

    def _require(self) -> asyncssh.SSHClientConnection:
        if not self.is_connected or self._conn is None:
            raise ConnectError("not connected", host=self.options.host)
        return self._conn

    # ---- commands ------------------------------------------------------------------------
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
        conn = self._require()
        try:
            result = await execute(
                conn,
                command,
                timeout=timeout if timeout is not None else self.command_timeout,
                stdin=stdin,
                env=env,
                become=become,
                username=self.options.username,
                become_password=self.options.become_password,
                cap=self.options.output_cap,
                open_timeout=self.options.connect_timeout,
            )
        except (AuthError, ConnectError) as exc:
            if exc.host is None:
                raise type(exc)(str(exc), host=self.options.host) from None
            raise
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            raise map_error(exc, self.options.host, during="run") from None
        return result.check() if check else result

    async def open_pty(
        self,
        term: str = "xterm-256color",
        cols: int = 80,
        rows: int = 24,
        *,
        command: str | None = None,
    ) -> PtySession:
        """An interactive login shell (or ``command``) on a pseudo-terminal."""
        conn = self._require()
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                process = await conn.create_process(
                    command, term_type=term, term_size=(cols, rows), encoding=None
                )
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            raise map_error(exc, self.options.host, during="pty") from None
        return PtySession(process)

    # ---- files (verified; see sshfiles) -------------------------------------------------------
    async def put_file(
        self, local: Path, remote: str, *, mode: int | None = None
    ) -> TransferResult:
        """Upload to a temporary name, verify the far side's SHA-256, then rename into place."""
        return await sshfiles.put_file(self, self._require(), Path(local), remote, mode)

    async def get_file(self, remote: str, local: Path) -> TransferResult:
        """Download to a temporary name beside ``local``, verify, then rename into place."""
        return await sshfiles.get_file(self, self._require(), remote, Path(local))


def _private_key(opts: ConnectOptions) -> asyncssh.SSHKey:
    try:
        return asyncssh.import_private_key(
            opts.private_key or "", opts.private_key_passphrase or None
        )
    except asyncssh.KeyEncryptionError:
        raise AuthError(
            "the private key cannot be decrypted (passphrase)", host=opts.host
        ) from None
    except (asyncssh.KeyImportError, ValueError):
        raise AuthError(
            "the private key cannot be imported (not an OpenSSH/PEM key, or encrypted and no "
            "passphrase is configured)",
            host=opts.host,
        ) from None


def _preferred_auth(keys: list[asyncssh.SSHKey] | None, password: str | None) -> tuple[str, ...]:
    methods: list[str] = []
    if keys:
        methods.append("publickey")
    if password is not None:
        methods += ["password", "keyboard-interactive"]
    return tuple(methods)
