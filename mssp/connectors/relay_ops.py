"""Relay operations the CLI and the dashboard use: enrol, revoke, presence (live and stored).

Presence is the relay's view (online, since, last heartbeat, RTT); it is stored on each
observation so `mssp site list` can still say when an agent was last seen while the relay is
unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mssp import audit
from mssp.connectors import relay_store
from mssp.connectors.relay import RelayPaths, translate
from mssp.errors import ConfigError, NotFoundError, RelayUnavailable, UsageError
from mssp.events import AgentPresenceChanged, EventBus
from mssp.store.names import split_full_name

log = logging.getLogger(__name__)
DEFAULT_TTL = 1800


@dataclass(frozen=True)
class Enrolment:
    """A fresh join token for one site (shown once, never stored)."""

    site: str
    relay_site_id: str
    token: str
    expires_at: datetime
    relay_url: str


async def enroll(paths: RelayPaths, full_name: str, *, ttl: int = DEFAULT_TTL) -> Enrolment:
    """Issue a single-use token bound to the site, register its hash at the relay, store the
    binding secret in the vault. Re-enrolling replaces the previous agent (its key is forgotten)."""
    from relay import token as join_token
    from relay.errors import RelayError

    client, site, relay_site_id = await relay_store.prepare_enrolment(full_name)
    endpoint = await paths.endpoint()
    async with audit.action("site.enroll", client=client, target=f"{client}/{site}") as entry:
        try:
            issued = join_token.issue(
                endpoint.url, endpoint.pin, relay_site_id, endpoint.core_public_key, ttl=ttl
            )
        except RelayError as exc:
            raise UsageError(str(exc)) from None
        rc = await paths.client()
        try:
            await rc.register_token(issued)
        except Exception as exc:
            raise translate(exc, "relay") from None
        record = await relay_store.save_enrolment(
            paths.vault, f"{client}/{site}", relay_site_id, issued.binding_secret, issued.expires_at
        )
        # never the token or the binding secret: only when the token stops working
        entry.detail.update(relay_site_id=relay_site_id, token_expires=str(issued.expires_at))
    return Enrolment(
        record.full_name, relay_site_id, issued.token, record.token_expires_at, endpoint.url
    )


async def revoke(paths: RelayPaths, full_name: str) -> relay_store.AgentRecord:
    """Cut the site's agent at the relay now and refuse it afterwards; mark it revoked."""
    client, site = split_full_name(full_name, 2)
    record = await relay_store.agent_for(client, site)
    if record is None:
        await relay_store.prepare_enrolment(full_name)  # NotFoundError for a missing site
        raise NotFoundError(f"site {full_name} has no enrolled agent")
    async with audit.action("site.revoke", client=client, target=f"{client}/{site}"):
        await paths.revoke(record.relay_site_id)
        return await relay_store.mark_revoked(full_name)


async def refresh_presence(paths: RelayPaths) -> list[relay_store.AgentRecord]:
    """Ask the relay for every site's presence now and store it; the updated records."""
    for item in await paths.presence():
        await relay_store.record_presence(
            item.site_id,
            online=item.online,
            since=item.since,
            last_seen=item.last_seen,
            rtt_ms=item.rtt_ms,
        )
    return await relay_store.list_agents()


def agent_json(record: relay_store.AgentRecord | None, source: str) -> dict[str, Any]:
    """The agent fields `mssp site list --json` and `mssp site agents --json` show."""
    if record is None:
        return {"agent": None}
    return {
        "agent": {
            "status": record.status,
            "online": record.online and record.revoked_at is None,
            "since": record.online_since,
            "last_seen": record.last_seen,
            "rtt_ms": record.rtt_ms,
            "enrolled_at": record.token_issued_at,
            "token_expires_at": record.token_expires_at,
            "joined_at": record.joined_at,
            "revoked_at": record.revoked_at,
            "agent_key": record.agent_key or None,
            "presence_at": record.presence_at,
            "presence_source": source,
        }
    }


async def agents_with_presence(
    settings: Any, vault: Any, *, live: bool = True
) -> tuple[dict[str, relay_store.AgentRecord], str, str | None]:
    """Every enrolled site's record by full name, refreshed from the relay when possible.

    Returns (records, source, problem): source "relay" (just asked) or "stored" (last known);
    problem says why the relay was not asked.
    """
    problem: str | None = None
    source = "stored"
    if live and vault is not None and await relay_store.get_endpoint() is not None:
        paths = RelayPaths(settings, vault, timeout=min(5.0, settings.connect_timeout))
        try:
            await refresh_presence(paths)
            source = "relay"
        except (RelayUnavailable, ConfigError, NotFoundError) as exc:
            problem = exc.message
        except Exception as exc:  # still list what is stored, saying why it is not live
            problem = str(translate(exc, "relay"))
        finally:
            await paths.aclose()
    elif live:
        problem = "no vault unlocked or no relay configured"
    records = {r.full_name: r for r in await relay_store.list_agents()}
    return records, source, problem


class PresenceWatcher:
    """Follows the relay's presence stream: stores it, publishes AgentPresenceChanged.

    Reconnects with capped backoff when the relay goes away; ``aclose()`` cancels it.
    """

    def __init__(self, paths: RelayPaths, bus: EventBus, *, cap: float = 60.0) -> None:
        self.paths = paths
        self.bus = bus
        self.cap = cap
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="mssp-relay-presence")

    async def _run(self) -> None:
        delay = 1.0
        while True:
            try:
                if await relay_store.get_endpoint() is None:
                    await asyncio.sleep(self.cap)
                    continue
                async for item in self.paths.watch_presence():
                    delay = 1.0
                    record = await relay_store.record_presence(
                        item.site_id,
                        online=item.online,
                        since=item.since,
                        last_seen=item.last_seen,
                        rtt_ms=item.rtt_ms,
                    )
                    if record is not None:
                        self.bus.publish(
                            AgentPresenceChanged(
                                client=record.client,
                                site=record.site,
                                online=item.online,
                                rtt_ms=item.rtt_ms,
                            )
                        )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = str(exc)
                log.info("relay presence stream ended: %s", exc)
            await asyncio.sleep(delay)
            delay = min(self.cap, delay * 2)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
