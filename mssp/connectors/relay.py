"""The core side of the relay: RelayPaths, the connection manager's PathProvider for relayed sites.

One admin connection to the relay per core process, one SSH connection per site agent (opened on
first use, kept, re-opened when lost), and host connections as nested SSH inside it (asyncssh
``tunnel=``; relay_connector.py). The agent's host key is verified with the site's binding secret
(which the relay never saw) and pinned before any credential or command crosses the link.

    paths = provider_from_settings(settings, vault)     # None without a vault
    manager = ConnectionManager(..., relay=paths, connector_factory=paths.connector_factory())
    ...
    await paths.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from mssp.config import Settings
from mssp.connectors import relay_store
from mssp.errors import (
    AuthError,
    HostKeyError,
    MsspError,
    RelayProtocolError,
    RelayUnavailable,
)
from mssp.inventory import HostRecord
from mssp.vault import Vault

log = logging.getLogger(__name__)


def translate(exc: BaseException, where: str) -> MsspError:
    """A relay package error as the mssp error the rest of the core understands (by type)."""
    from relay import errors as rerr

    if isinstance(exc, MsspError):
        return exc
    if isinstance(exc, rerr.ImpersonationError):
        return HostKeyError(str(exc), host=where)
    if isinstance(exc, rerr.SiteRevokedError):
        error = RelayUnavailable(f"the site's agent is revoked ({exc})", host=where)
        error.retryable = False
        return error
    if isinstance(exc, rerr.RelayAuthError):
        return AuthError(f"the relay refused this core: {exc}", host=where)
    if isinstance(exc, rerr.RelayUnavailableError):
        return RelayUnavailable(str(exc), host=where)
    if isinstance(exc, rerr.TokenError | rerr.RelayProtocolError):
        return RelayProtocolError(f"{where}: {exc}")
    if isinstance(exc, rerr.ConfigError):
        error = RelayUnavailable(f"relay configuration: {exc}", host=where)
        error.retryable = False
        return error
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return HostKeyError(
            "the agent's host key is not the pinned one: the relay spliced this session to "
            "something else (possible impersonation); refusing to continue",
            host=where,
        )
    if isinstance(exc, asyncssh.PermissionDenied):
        return AuthError("the agent does not authorise this core's key", host=where)
    if isinstance(exc, TimeoutError):
        return RelayUnavailable("the relay or the agent did not answer in time", host=where)
    if isinstance(exc, asyncssh.Error):
        return RelayUnavailable(f"agent connection failed: {exc.reason}", host=where)
    if isinstance(exc, OSError):
        return RelayUnavailable(f"relay unreachable: {exc.strerror or exc}", host=where)
    return RelayUnavailable(f"relay failure: {type(exc).__name__}: {exc}", host=where)


def describe_loss(exc: BaseException | None) -> str:
    """Why an agent connection ended, in words."""
    if exc is None:
        return "the agent connection was closed"
    from relay.errors import RelayError

    if isinstance(exc, RelayError):
        # the tunnel labels its errors with the opaque relay site id; say what it is instead
        text = re.sub(r"^relay site [A-Za-z0-9._/-]+: ", "", str(exc))
        return f"the link to the site's agent through the relay was lost ({text})"
    reason = getattr(exc, "reason", "") or str(exc) or type(exc).__name__
    return f"the agent connection was lost ({reason})"


@dataclass
class SiteTunnel:
    """What ``tunnel_for`` returns: asyncssh's ``tunnel=`` shape over one site agent connection.

    It remembers the agent's last channel refusal, so a refused target is reported with the
    agent's own reason, and it knows why the agent connection ended, if it did.
    """

    site: str
    conn: asyncssh.SSHClientConnection
    refusals: dict[tuple[str, int], str] = field(default_factory=dict)
    """The agent's last refusal per target (host, port): several hosts connect at once."""

    @property
    def alive(self) -> bool:
        return not self.conn.is_closed()

    def lost_reason(self) -> str | None:
        """None while the agent connection is open; else why it ended."""
        if self.alive:
            return None
        from relay.client import lost_reason

        return describe_loss(lost_reason(self.conn))

    async def create_connection(self, session_factory: Any, host: str, port: int) -> Any:
        from relay.client import AgentTunnel

        try:
            return await AgentTunnel(self.conn).create_connection(session_factory, host, port)
        except asyncssh.ChannelOpenError as exc:
            if exc.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED:
                self.refusals[(host, port)] = exc.reason
            raise

    async def open_connection(self, host: str, port: int) -> Any:
        from relay.client import AgentTunnel

        try:
            return await AgentTunnel(self.conn).open_connection(host, port)
        except asyncssh.ChannelOpenError as exc:
            if exc.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED:
                self.refusals[(host, port)] = exc.reason
            raise


@dataclass
class _Link:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    tunnel: SiteTunnel | None = None


class RelayPaths:
    """PathProvider for relayed hosts (see the module docstring). Close with ``aclose()``."""

    def __init__(self, settings: Settings, vault: Vault, *, timeout: float | None = None) -> None:
        self.settings = settings
        self.vault = vault
        self.timeout = timeout or settings.connect_timeout
        self._rc: Any = None
        self._rc_lock = asyncio.Lock()
        self._links: dict[str, _Link] = {}
        self._core_key: asyncssh.SSHKey | None = None
        self._closed = False
        #: counters for tests and benchmarks
        self.agent_connects = 0

    # ---- the admin channel --------------------------------------------------------------
    async def endpoint(self) -> relay_store.Endpoint:
        endpoint = await relay_store.get_endpoint()
        if endpoint is None:
            error = RelayUnavailable(
                "no relay is configured: run `mssp relay init` (or `mssp relay set`)"
            )
            error.retryable = False
            raise error
        if self.settings.relay_url:
            endpoint = relay_store.Endpoint(
                self.settings.relay_url, endpoint.pin, endpoint.core_public_key
            )
        return endpoint

    async def client(self) -> Any:
        """The relay admin client, (re)connected when needed."""
        from relay.client import RelayClient

        if self._closed:
            raise RelayUnavailable("the relay connection is closed")
        async with self._rc_lock:
            rc = self._rc
            if rc is not None and getattr(rc, "_failure", None) is None:
                return rc
            self._rc = None
            if rc is not None:
                with contextlib.suppress(Exception):
                    await rc.aclose()
            endpoint = await self.endpoint()
            if self._core_key is None:
                self._core_key = await relay_store.core_key(self.vault)
            try:
                rc = RelayClient(endpoint.url, endpoint.pin, self._core_key, timeout=self.timeout)
                await rc.__aenter__()
            except Exception as exc:
                raise translate(exc, "relay") from None
            self._rc = rc
            return rc

    # ---- PathProvider -------------------------------------------------------------------
    async def tunnel_for(self, host: HostRecord) -> SiteTunnel | None:
        record = await relay_store.agent_for(host.client, host.site)
        where = f"{host.client}/{host.site}"
        if record is None:
            error = RelayUnavailable(
                f"site {where} has no agent enrolled: `mssp site enroll {where}`", host=where
            )
            error.retryable = False
            raise error
        if record.revoked_at is not None:
            error = RelayUnavailable(f"the agent of site {where} is revoked", host=where)
            error.retryable = False
            raise error
        link = self._links.setdefault(record.relay_site_id, _Link())
        async with link.lock:
            if link.tunnel is not None and link.tunnel.alive:
                return link.tunnel
            link.tunnel = None
            link.tunnel = await self._connect_agent(record, where)
            return link.tunnel

    async def _connect_agent(self, record: relay_store.AgentRecord, where: str) -> SiteTunnel:
        from relay.client import connect_agent

        rc = await self.client()
        secret = await relay_store.binding_secret(self.vault, record)
        try:
            key = await rc.verified_agent_key(record.relay_site_id, secret)
            if record.agent_key and key != record.agent_key:
                raise HostKeyError(
                    "the relay presents a different agent key than the one pinned at enrolment, "
                    "with a valid proof: enrol the site again if the agent was re-installed",
                    host=where,
                )
            if not record.agent_key:
                enrolment = await rc.enrolment(record.relay_site_id)
                await relay_store.pin_agent_key(record.relay_site_id, key, enrolment.joined_at)
            assert self._core_key is not None
            conn = await connect_agent(
                await rc.open_site(record.relay_site_id), key, self._core_key, timeout=self.timeout
            )
        except Exception as exc:
            raise translate(exc, where) from None
        self.agent_connects += 1
        log.info("agent connection to %s open", where)
        return SiteTunnel(where, conn)

    # ---- presence -----------------------------------------------------------------------
    async def presence(self) -> list[Any]:
        rc = await self.client()
        try:
            return await rc.presence()
        except Exception as exc:
            raise translate(exc, "relay") from None

    async def watch_presence(self) -> AsyncIterator[Any]:
        rc = await self.client()
        try:
            async for item in rc.watch_presence():
                yield item
        except Exception as exc:
            raise translate(exc, "relay") from None

    async def revoke(self, relay_site_id: str) -> None:
        rc = await self.client()
        try:
            await rc.revoke_site(relay_site_id)
        except Exception as exc:
            raise translate(exc, "relay") from None
        link = self._links.pop(relay_site_id, None)
        if link is not None and link.tunnel is not None:
            link.tunnel.conn.close()

    # ---- connectors and closing ---------------------------------------------------------
    def connector_factory(self, base: Any = None) -> Any:
        """The connection manager's factory: relayed hosts get relay-aware connectors."""
        from mssp.connectors.relay_connector import relay_connector_factory

        return relay_connector_factory(self.settings, base)

    async def aclose(self) -> None:
        self._closed = True
        links, self._links = list(self._links.values()), {}
        for link in links:
            if link.tunnel is not None:
                link.tunnel.conn.close()
        for link in links:
            if link.tunnel is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(link.tunnel.conn.wait_closed(), 5)
        rc, self._rc = self._rc, None
        if rc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(rc.aclose(), 5)


def provider_from_settings(settings: Settings, vault: Vault | None) -> RelayPaths | None:
    """A RelayPaths for a command that has the vault; None without one (no core key then).

    Cheap: nothing is read or dialled until a relayed host is first used.
    """
    if vault is None:
        return None
    return RelayPaths(settings, vault)


def manager_options(paths: RelayPaths | None) -> dict[str, Any]:
    """Keyword arguments for ConnectionManager: ``relay=`` and the relay-aware factory."""
    if paths is None:
        return {}
    return {"relay": paths, "connector_factory": paths.connector_factory()}
