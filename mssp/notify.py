"""Notifications through Apprise URLs, de-duplicated as incidents: one message when a problem
opens, none while it stays open, one recovery message when it clears.

Targets are Apprise URLs (webhooks, e-mail, chat...) that often embed a token or password, so the
caller resolves them from the vault and hands them in as ``Secret`` values; they never reach a log
or an exception. Message texts are built by mssp from its own records and never carry a secret.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from mssp.errors import MsspError

log = logging.getLogger(__name__)


def _silence_apprise() -> None:
    # Apprise logs target URLs, tokens and passwords included, at DEBUG and in its warnings.
    # None of its records may reach our logs; our own Delivery counts say what happened.
    apprise_log = logging.getLogger("apprise")
    apprise_log.propagate = False
    apprise_log.handlers[:] = [logging.NullHandler()]
    # requests' urllib3 logs each request line (path and query: webhook tokens) at DEBUG.
    logging.getLogger("urllib3").setLevel(logging.WARNING)


class _SecretLike(Protocol):
    def reveal(self) -> str: ...


@dataclass(frozen=True)
class Target:
    """Where messages go: every client's messages (client None) or one client's."""

    url: _SecretLike
    client: str | None = None
    name: str = ""


@dataclass(frozen=True)
class Delivery:
    """What happened to one message."""

    sent: int
    failed: int

    def describe(self) -> str:
        return f"sent to {self.sent} of {self.sent + self.failed} targets"


@dataclass(frozen=True)
class Change:
    """The result of reporting a problem's state: whether a message went out."""

    notified: bool
    incident_id: int | None
    delivery: Delivery | None = None


class Sender(Protocol):
    async def send(self, urls: Sequence[str], title: str, body: str) -> Delivery: ...


class AppriseSender:
    """Sends one message to each URL through Apprise, counting per-target success."""

    async def send(self, urls: Sequence[str], title: str, body: str) -> Delivery:
        import apprise

        _silence_apprise()
        sent = failed = 0
        for url in urls:
            app = apprise.Apprise()
            if not app.add(url):
                failed += 1
                log.warning("a notification target URL is not valid for Apprise (not shown)")
                continue
            try:
                ok = await app.async_notify(body=body, title=title)
            except Exception:  # Apprise plugins raise anything; a target failing is data
                ok = False
            if ok:
                sent += 1
            else:
                failed += 1
                log.warning("a notification target did not accept the message")
        return Delivery(sent=sent, failed=failed)


class Notifier:
    """Opens and clears incidents and sends their messages to the matching targets."""

    def __init__(self, targets: Sequence[Target], sender: Sender | None = None) -> None:
        self._targets = list(targets)
        self._sender = sender or AppriseSender()

    def _urls_for(self, client: str) -> list[str]:
        return [t.url.reveal() for t in self._targets if t.client is None or t.client == client]

    async def problem(self, key: str, *, client: str, kind: str, subject: str, body: str) -> Change:
        """Report that a problem exists now. Only the first report of an open incident sends."""
        from mssp.db import write_transaction
        from mssp.models.notify import Incident

        now = datetime.now(UTC)
        async with write_transaction():
            open_incident = await Incident.filter(key=key, closed_at__isnull=True).first()
            if open_incident is not None:
                open_incident.last_seen = now
                await open_incident.save(update_fields=["last_seen"])
                return Change(notified=False, incident_id=open_incident.id)
            incident = await Incident.create(
                key=key, client=client, kind=kind, subject=subject, opened_at=now, last_seen=now
            )
        delivery = await self._send(client, f"PROBLEM [{client}] {subject}", body)
        incident.open_delivery = delivery.describe()
        await incident.save(update_fields=["open_delivery"])
        return Change(notified=True, incident_id=incident.id, delivery=delivery)

    async def resolved(self, key: str, *, body: str) -> Change:
        """Report that a problem is gone. Sends a recovery message if an incident was open."""
        from mssp.db import write_transaction
        from mssp.models.notify import Incident

        now = datetime.now(UTC)
        async with write_transaction():
            incident = await Incident.filter(key=key, closed_at__isnull=True).first()
            if incident is None:
                return Change(notified=False, incident_id=None)
            incident.closed_at = now
            await incident.save(update_fields=["closed_at"])
        delivery = await self._send(
            incident.client, f"RECOVERED [{incident.client}] {incident.subject}", body
        )
        incident.close_delivery = delivery.describe()
        await incident.save(update_fields=["close_delivery"])
        return Change(notified=True, incident_id=incident.id, delivery=delivery)

    async def _send(self, client: str, title: str, body: str) -> Delivery:
        urls = self._urls_for(client)
        if not urls:
            return Delivery(sent=0, failed=0)
        try:
            return await self._sender.send(urls, title, body)
        except MsspError:
            raise
        except Exception as exc:  # never let a notification failure take the daemon down
            log.warning("notification failed: %s", type(exc).__name__)
            return Delivery(sent=0, failed=len(urls))


async def open_incidents(client: str | None = None) -> list[object]:
    from mssp.models.notify import Incident

    query = Incident.filter(closed_at__isnull=True)
    if client is not None:
        query = query.filter(client=client)
    return list(await query.order_by("opened_at"))
