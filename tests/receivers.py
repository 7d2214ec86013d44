"""Local notification receivers for tests: a webhook (aiohttp) and an SMTP server (aiosmtpd),
both on loopback, recording what they receive."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class Webhook:
    port: int
    received: list[dict] = field(default_factory=list)

    def url(self, token: str) -> str:
        return f"json://127.0.0.1:{self.port}/hook/{token}"


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    from aiohttp import web

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


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content.decode("utf-8", "replace"))
        return "250 OK"

    def url(self) -> str:
        return (
            f"mailto://mssp@example.com?smtp=127.0.0.1&port={self.port}"
            "&to=consultant@example.com&mode=insecure"
        )


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    box = Mailbox()
    with socket.socket() as probe:  # aiosmtpd cannot report a port it was given as 0
        probe.bind(("127.0.0.1", 0))
        box.port = probe.getsockname()[1]
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()
