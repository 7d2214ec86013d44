"""Notifications: one message per incident, one recovery message, to a real local webhook and a
real local SMTP server (aiosmtpd); target URLs never reach the log."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from mssp.config import Settings
from mssp.notify import Notifier, Target


@dataclass
class _Plain:
    value: str

    def reveal(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return "Secret('****')"


@dataclass
class Webhook:
    port: int
    received: list[dict] = field(default_factory=list)


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    hook = Webhook(port=0)

    async def handle(request: web.Request) -> web.Response:
        hook.received.append(json.loads(await request.text()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook/{token}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield hook
    await runner.cleanup()


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.content.decode("utf-8", "replace"))
        return "250 OK"


@pytest.fixture
def smtp() -> AsyncIterator[tuple[_Mailbox, int]]:
    box = _Mailbox()
    with socket.socket() as probe:  # aiosmtpd cannot report a port it was given as 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


async def test_one_message_per_incident_and_one_recovery(
    db: Settings, webhook: Webhook, smtp: tuple[_Mailbox, int], caplog: pytest.LogCaptureFixture
) -> None:
    box, smtp_port = smtp
    token = "tok-SECRET-1f2e3d"
    hook_url = f"json://127.0.0.1:{webhook.port}/hook/{token}"
    mail_url = (
        f"mailto://mssp@example.com?smtp=127.0.0.1&port={smtp_port}"
        "&to=consultant@example.com&mode=insecure"
    )
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
    url = f"json://127.0.0.1:{webhook.port}/hook/acme"
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
