"""Notifications: one message per incident, one recovery message, to a real local webhook and a
real local SMTP server (aiosmtpd); target URLs never reach the log."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import pytest

from mssp.config import Settings
from mssp.notify import Notifier, Target
from tests.receivers import Mailbox, Webhook


@dataclass
class _Plain:
    value: str

    def reveal(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return "Secret('****')"


async def test_one_message_per_incident_and_one_recovery(
    db: Settings, webhook: Webhook, mailbox: Mailbox, caplog: pytest.LogCaptureFixture
) -> None:
    box = mailbox
    token = "tok-SECRET-1f2e3d"
    hook_url = webhook.url(token)
    mail_url = mailbox.url()
    notifier = Notifier([Target(_Plain(hook_url)), Target(_Plain(mail_url), client="acme")])
    caplog.set_level(logging.DEBUG)

    first = await notifier.problem(
        "backup:acme/main/fs01",
        client="acme",
        kind="backup",
        subject="fs01 backup CORRUPT",
        body="check --read-data failed: pack 3f2a damaged",
    )
    again = await notifier.problem(
        "backup:acme/main/fs01",
        client="acme",
        kind="backup",
        subject="fs01 backup CORRUPT",
        body="still broken",
    )
    assert first.notified and not again.notified
    assert first.delivery is not None and first.delivery.sent == 2
    await asyncio.sleep(0.1)
    assert len(webhook.received) == 1 and len(box.messages) == 1
    assert "PROBLEM [acme] fs01 backup CORRUPT" in webhook.received[0]["title"]

    done = await notifier.resolved("backup:acme/main/fs01", body="VERIFIED again")
    twice = await notifier.resolved("backup:acme/main/fs01", body="VERIFIED again")
    assert done.notified and not twice.notified
    await asyncio.sleep(0.1)
    assert len(webhook.received) == 2 and "RECOVERED" in webhook.received[1]["title"]
    assert len(box.messages) == 2 and "RECOVERED" in box.messages[1]

    # A new problem after recovery is a new incident, announced again.
    assert (
        await notifier.problem(
            "backup:acme/main/fs01", client="acme", kind="backup", subject="x", body="y"
        )
    ).notified
    ours = [
        r.getMessage()
        for r in caplog.records
        if not r.name.startswith(("aiohttp.access", "mail.log"))  # the test's own receivers
    ]
    assert not any(token in m for m in ours)


async def test_client_targets_get_only_their_client(db: Settings, webhook: Webhook) -> None:
    url = webhook.url("acme")
    notifier = Notifier([Target(_Plain(url), client="acme")])
    other = await notifier.problem("run:9", client="globex", kind="run", subject="s", body="b")
    assert other.notified and other.delivery is not None and other.delivery.sent == 0
    assert webhook.received == []


async def test_unreachable_target_is_reported_not_raised(db: Settings) -> None:
    notifier = Notifier([Target(_Plain("json://127.0.0.1:9/nothing-listens"))])
    change = await notifier.problem(
        "agent:acme/main", client="acme", kind="agent", subject="agent offline", body="since 02:10"
    )
    assert change.notified and change.delivery is not None and change.delivery.failed == 1
