"""Event dataclasses (past tense) and a bounded async EventBus that views subscribe to.

The database is the record; events are how views learn of changes without polling. A subscriber
that falls behind loses coalescible events (the newest state per host wins) but never blocks the
engine. Subscribers that must see everything (the recorder of a test) ask for ``lossless=True``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    """Base of every event."""

    at: float = field(default_factory=time.time, kw_only=True)
    """Unix time the event happened."""

    @property
    def coalesce_key(self) -> object | None:
        """Events with the same non-None key replace each other in a lagging subscriber."""
        return None


@dataclass(frozen=True)
class RunStarted(Event):
    run_id: int
    task: str
    target: str
    host_count: int


@dataclass(frozen=True)
class HostStateChanged(Event):
    run_id: int
    host: str
    """Full host name client/site/host."""
    state: str
    previous: str = ""
    message: str = ""

    @property
    def coalesce_key(self) -> object | None:
        return ("host-state", self.run_id, self.host)


@dataclass(frozen=True)
class HostOutput(Event):
    run_id: int
    host: str
    stream: str
    """"stdout" or "stderr"."""
    text: str
    """Already neutralised: no raw terminal escape sequences."""


@dataclass(frozen=True)
class RunProgressed(Event):
    run_id: int
    counts: dict[str, int]

    @property
    def coalesce_key(self) -> object | None:
        return ("run-progress", self.run_id)


@dataclass(frozen=True)
class RunFinished(Event):
    run_id: int
    state: str
    counts: dict[str, int]
    message: str = ""


@dataclass(frozen=True)
class EngineIdle(Event):
    """Nothing is queued or running in this engine."""


@dataclass(frozen=True)
class AgentPresenceChanged(Event):
    client: str
    site: str
    online: bool
    rtt_ms: float | None = None


@dataclass(frozen=True)
class WaveStarted(Event):
    run_id: int
    wave: int
    """0-based; with --canary wave 0 is the canary."""
    host_count: int


@dataclass(frozen=True)
class RunHalted(Event):
    """--max-fail stopped a run: the remaining waves are skipped."""

    run_id: int
    reason: str
    skipped: int


@dataclass(frozen=True)
class HostQueuedOffline(Event):
    """An unreachable host waits in the offline queue until it returns or ``until`` passes."""

    run_id: int
    host: str
    until: float
    """Unix time the host expires."""
    reason: str = ""


@dataclass(frozen=True)
class HostExpired(Event):
    """A host waited in the offline queue for its whole time-to-live and was not run."""

    run_id: int
    host: str


class _Subscription:
    def __init__(self, maxsize: int, lossless: bool) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(0 if lossless else maxsize)
        self.lossless = lossless
        self.dropped = 0

    def offer(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
            return
        except asyncio.QueueFull:
            pass
        # Full: drop the oldest coalescible event of the same key, else the oldest coalescible.
        items = list(self.queue._queue)  # type: ignore[attr-defined]
        key = event.coalesce_key
        victim = None
        for i, old in enumerate(items):
            if key is not None and old.coalesce_key == key:
                victim = i
                break
        if victim is None:
            for i, old in enumerate(items):
                if old.coalesce_key is not None or isinstance(old, HostOutput):
                    victim = i
                    break
        if victim is None:
            self.dropped += 1
            return
        del items[victim]
        self.queue._queue.clear()  # type: ignore[attr-defined]
        self.queue._queue.extend(items)  # type: ignore[attr-defined]
        self.queue.put_nowait(event)
        self.dropped += 1


class EventBus:
    """Fan-out of events to subscribers; publishing never blocks."""

    def __init__(self, maxsize: int = 10_000) -> None:
        self._subs: set[_Subscription] = set()
        self._maxsize = maxsize

    def publish(self, event: Event) -> None:
        for sub in tuple(self._subs):
            sub.offer(event)

    @contextlib.asynccontextmanager
    async def subscribe(self, *, lossless: bool = False) -> AsyncIterator[asyncio.Queue[Event]]:
        """``async with bus.subscribe() as queue:`` then ``await queue.get()``."""
        sub = _Subscription(self._maxsize, lossless)
        self._subs.add(sub)
        try:
            yield sub.queue
        finally:
            self._subs.discard(sub)


# ---- events as JSON (the daemon hands them to the command that started a run) ----------------
def to_json(event: Event) -> dict[str, object]:
    """``{"event": "<class name>", ...fields}``."""
    return {"event": type(event).__name__, **dataclasses.asdict(event)}


def from_json(data: dict[str, object]) -> Event | None:
    """The event ``to_json`` wrote; None for a kind this version does not know (newer peer).

    Raises ValueError for a known kind with missing or unknown fields.
    """
    kind = _KINDS.get(str(data.get("event", "")))
    if kind is None:
        return None
    fields = {f.name for f in dataclasses.fields(kind)}
    values = {k: v for k, v in data.items() if k != "event"}
    if not set(values) <= fields:
        raise ValueError(f"unexpected fields for {kind.__name__}: {sorted(set(values) - fields)}")
    try:
        return kind(**values)
    except TypeError as exc:
        raise ValueError(f"bad {kind.__name__}: {exc}") from None


_KINDS: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        RunStarted,
        HostStateChanged,
        HostOutput,
        RunProgressed,
        RunFinished,
        EngineIdle,
        AgentPresenceChanged,
        WaveStarted,
        RunHalted,
        HostQueuedOffline,
        HostExpired,
    )
}
