"""Run a task on one host through the engine's own per-host runner (mssp.engine.runner).

No database and no fleet: one connector the test made, handed to ``run_host`` as the engine's
connection source would hand a pooled one; secrets from a plain dict.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from mssp.connectors.base import Connector
from mssp.engine.runner import HostOutcome, HostWork, run_host
from mssp.inventory import HostRecord
from mssp.tasks import get_task


class OneConnection:
    """A ConnectionSource over one connector (connected on first use, closed by the test)."""

    def __init__(self, conn: Connector) -> None:
        self.conn = conn

    @contextlib.asynccontextmanager
    async def connection(self, host: HostRecord) -> AsyncIterator[Connector]:
        if not self.conn.is_connected:
            await self.conn.connect()
        yield self.conn


class StaticSecrets:
    def __init__(self, secrets: Mapping[str, Any]) -> None:
        self.secrets = dict(secrets)

    async def secrets_for(self, host: HostRecord, names: tuple[str, ...]) -> Mapping[str, Any]:
        return {name: self.secrets[name] for name in names}


async def run_task(
    name: str,
    params: Mapping[str, Any],
    host: HostRecord,
    conn: Connector,
    *,
    check: bool = False,
    secrets: Mapping[str, Any] | None = None,
    timeout: float = 120.0,
    progress: list[str] | None = None,
) -> HostOutcome:
    task = get_task(name)(dict(params))

    def emit(stream: str, text: str) -> None:
        if progress is not None and stream == "progress":
            progress.append(text)

    work = HostWork(
        host=host,
        task=task,
        connections=OneConnection(conn),
        timeout=timeout,
        retries=0,
        check_mode=check,
        output_cap=1024 * 1024,
        emit=emit,
        secrets=StaticSecrets(secrets or {}),
    )
    return await run_host(work)
