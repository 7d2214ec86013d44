"""Run the lab's simulated Windows host (recorded replies, not Windows) on a thread for tests.

The endpoint gets its own event loop thread so module-scoped servers can serve tests that each
run on their own function-scoped loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from mssp.lab.winrm_endpoint import WinRMEndpoint

T = TypeVar("T")

USER = "Administrator"
PASSWORD = "Lab-Pa55word!"  # the simulated host's own throw-away account


class EndpointThread:
    """An event loop on a daemon thread hosting endpoints; call() runs code on that loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def do(self, func: Callable[[], T]) -> T:
        async def wrapper() -> T:
            return func()

        return self.call(wrapper())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@contextmanager
def running_endpoint(**options: Any) -> Iterator[tuple[EndpointThread, WinRMEndpoint]]:
    """Start a WinRMEndpoint(**options) on its own loop thread; stop both afterwards."""
    runner = EndpointThread()
    endpoint = runner.call(_make(options))
    try:
        yield runner, endpoint
    finally:
        runner.call(endpoint.stop())
        runner.stop()


async def _make(options: dict[str, Any]) -> WinRMEndpoint:
    options.setdefault("users", {USER: PASSWORD})
    endpoint = WinRMEndpoint(**options)
    await endpoint.start()
    return endpoint
