"""The agent's SSH server, one per relay session: core key only, direct-tcpip to the allowlist only.

It executes nothing: sessions (exec, shell, subsystems such as SFTP), remote forwards, UNIX sockets,
agent and X11 forwarding are all refused. Forwarded channels get a large window so bulk transfers
are not throttled by asyncssh's small direct-tcpip default.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

import asyncssh

from relay.allowlist import Allowlist, AllowlistRefusal
from relay.tunnel import WebSocketTunnel

log = logging.getLogger("relay.agent.ssh")

CHANNEL_WINDOW = 8 * 1024 * 1024
CHANNEL_PKTSIZE = 64 * 1024
CIPHERS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"]


class AgentSSHServer(asyncssh.SSHServer):
    """Policy of the agent's SSH server (one instance per SSH connection)."""

    def __init__(self, core_key: asyncssh.SSHKey, allowlist: Allowlist, label: str) -> None:
        self._core_key = core_key
        self._allowlist = allowlist
        self._label = label
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return key.public_data == self._core_key.public_data

    def session_requested(self) -> bool:
        log.warning("%s: session (exec/shell/subsystem) refused", self._label)
        return False

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False

    def unix_connection_requested(self, dest_path: str) -> bool:
        return False

    def unix_server_requested(self, listen_path: str) -> bool:
        return False

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> Any:
        assert self._conn is not None
        try:
            self._allowlist.quick_check(dest_host, dest_port)
        except AllowlistRefusal as exc:
            log.info("%s: refused %s:%d: %s", self._label, dest_host, dest_port, exc)
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, f"agent: {exc}"
            ) from None
        chan = self._conn.create_tcp_channel(window=CHANNEL_WINDOW, max_pktsize=CHANNEL_PKTSIZE)
        return chan, self._forward(dest_host, dest_port)

    def _forward(self, host: str, port: int) -> Awaitable[Any]:
        conn = self._conn
        assert conn is not None

        async def forward() -> Any:
            try:
                address = await self._allowlist.resolve(host, port)
            except AllowlistRefusal as exc:
                raise asyncssh.ChannelOpenError(
                    asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, f"agent: {exc}"
                ) from None
            return await conn.forward_connection(address, port)

        return forward()


async def serve_session(
    tunnel: WebSocketTunnel,
    host_key: asyncssh.SSHKey,
    core_key: asyncssh.SSHKey,
    allowlist: Allowlist,
    *,
    label: str,
) -> None:
    """Run the SSH server over one relay session until the core disconnects."""
    conn = await asyncssh.connect_reverse(
        label,
        0,
        tunnel=tunnel,
        config=None,
        server_factory=lambda: AgentSSHServer(core_key, allowlist, label),
        server_host_keys=[host_key],
        encryption_algs=CIPHERS,
        allow_pty=False,
        agent_forwarding=False,
        x11_forwarding=False,
        login_timeout=30,
        keepalive_interval=30,
        keepalive_count_max=3,
        max_pktsize=CHANNEL_PKTSIZE,
    )
    await conn.wait_closed()
