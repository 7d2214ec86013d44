"""The relay's live state: which agents are online, pending and spliced sessions, presence watchers.

Only routing facts live here: who is connected, since when, the round-trip time, and how many
sessions are open. Nothing that flows through a session is ever looked at.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from relay import protocol

Clock = Callable[[], float]
WATCH_BACKLOG = 20_000


class RateLimiter:
    """At most ``limit`` events per ``window`` seconds per key (sliding window)."""

    def __init__(self, limit: int, window: float, *, clock: Clock = time.monotonic) -> None:
        self.limit, self.window, self._clock = limit, window, clock
        self._events: dict[str, deque[float]] = defaultdict(deque)

    def exhausted(self, key: str) -> bool:
        """True if ``key`` has used up its events (does not count as an event)."""
        now = self._clock()
        return sum(1 for t in self._events.get(key, ()) if t > now - self.window) >= self.limit

    def allow(self, key: str) -> bool:
        now = self._clock()
        events = self._events[key]
        while events and events[0] <= now - self.window:
            events.popleft()
        if len(events) >= self.limit:
            return False
        events.append(now)
        if len(self._events) > 10_000:  # bound memory under a spray of source addresses
            for stale in [k for k, v in self._events.items() if not v][:5000]:
                del self._events[stale]
        return True


class Refused(Exception):
    """A refusal sent to a websocket peer as ``{"t":"error","code":...,"reason":...}``."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclass
class AgentLink:
    """One authenticated agent control connection."""

    site_id: str
    ws: web.WebSocketResponse
    since: float
    last_seen: float
    rtt_ms: float | None = None
    draining: bool = False
    ping_n: int = 0
    """The last ping sent (only its pong yields an RTT sample)."""
    ping_sent: float = 0.0
    closed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Splice:
    """One core stream waiting for, then joined to, one agent stream."""

    session_id: str
    site_id: str
    core_ws: web.WebSocketResponse
    agent_ws: asyncio.Future[web.WebSocketResponse]
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Hub:
    """Online agents, sessions and presence watchers of one relay process."""

    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock
        self.agents: dict[str, AgentLink] = {}
        self.splices: dict[str, Splice] = {}
        self.sessions_by_site: dict[str, set[str]] = defaultdict(set)
        self.watchers: set[asyncio.Queue[str | None]] = set()
        self.last_seen: dict[str, float] = {}
        self.accepted_agents = 0
        """Count of agent control connections accepted (for tests and metrics)."""

    # presence ------------------------------------------------------------------------------
    def presence(self, site_id: str) -> dict[str, Any]:
        link = self.agents.get(site_id)
        return {
            "site": site_id,
            "online": link is not None,
            "since": link.since if link else None,
            "last_seen": link.last_seen if link else self.last_seen.get(site_id),
            "rtt_ms": link.rtt_ms if link else None,
            "sessions": len(self.sessions_by_site.get(site_id, ())),
            "draining": bool(link and link.draining),
        }

    def all_presence(self, known_sites: list[str]) -> list[dict[str, Any]]:
        return [self.presence(s) for s in sorted(set(known_sites) | set(self.agents))]

    def publish(self, site_id: str) -> None:
        """Push this site's presence to every watching core (slow watchers are cut, not awaited)."""
        message = protocol.encode({"t": "presence", **self.presence(site_id)})
        for queue in list(self.watchers):
            if queue.qsize() >= WATCH_BACKLOG:
                # A core that does not read its presence stream is cut rather than buffered.
                self.watchers.discard(queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait(message)

    # agents --------------------------------------------------------------------------------
    async def attach_agent(self, link: AgentLink) -> None:
        """Register an agent link; an older link for the same site is closed (never two)."""
        old = self.agents.get(link.site_id)
        self.agents[link.site_id] = link
        self.accepted_agents += 1
        if old is not None:
            old.closed.set()
            with contextlib.suppress(Exception):
                await old.ws.close(code=4000, message=b"replaced by a newer connection")
        self.publish(link.site_id)

    def detach_agent(self, link: AgentLink) -> None:
        link.closed.set()
        if self.agents.get(link.site_id) is link:
            del self.agents[link.site_id]
            self.last_seen[link.site_id] = self._clock()
            self.publish(link.site_id)

    async def cut_site(self, site_id: str, reason: str) -> None:
        """Close the site's agent and every session it carries (revocation)."""
        link = self.agents.get(site_id)
        if link is not None:
            with contextlib.suppress(Exception):
                await link.ws.send_str(
                    protocol.encode({"t": "error", "code": "revoked", "reason": reason})
                )
            with contextlib.suppress(Exception):
                await link.ws.close(code=4003, message=b"revoked")
            self.detach_agent(link)
        for session_id in list(self.sessions_by_site.get(site_id, ())):
            splice = self.splices.get(session_id)
            if splice is not None:
                await self.close_splice(splice)

    # sessions ------------------------------------------------------------------------------
    def add_splice(self, splice: Splice) -> None:
        self.splices[splice.session_id] = splice
        self.sessions_by_site[splice.site_id].add(splice.session_id)

    def remove_splice(self, splice: Splice) -> None:
        self.splices.pop(splice.session_id, None)
        sessions = self.sessions_by_site.get(splice.site_id)
        if sessions is not None:
            sessions.discard(splice.session_id)
            if not sessions:
                del self.sessions_by_site[splice.site_id]
        splice.done.set()

    async def close_splice(self, splice: Splice) -> None:
        with contextlib.suppress(Exception):
            await splice.core_ws.close(code=4003, message=b"site revoked")
        if splice.agent_ws.done() and not splice.agent_ws.cancelled():
            with contextlib.suppress(Exception):
                await splice.agent_ws.result().close(code=4003, message=b"site revoked")
        self.remove_splice(splice)
