"""Short write transactions in raw SQL: BEGIN IMMEDIATE on SQLite, a transaction on PostgreSQL.

The engine's hot path (marking hosts running, recording results, taking and releasing host
locks) goes through here so that many rows share one transaction. On SQLite a transaction that
reads before it writes can fail at once with "database is locked" when another process writes
(FIELD-NOTES §6); BEGIN IMMEDIATE takes the write lock up front and lets the busy timeout work.
SQL is written with ``?`` placeholders and rewritten to ``$n`` for PostgreSQL.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from typing import Any

from tortoise import connections
from tortoise.transactions import in_transaction

_PLACEHOLDER = re.compile(r"\?")


def is_sqlite() -> bool:
    return connections.get("default").capabilities.dialect == "sqlite"


def placeholders(count: int) -> str:
    """ "?, ?, ?" for an IN list of ``count`` values."""
    return ", ".join("?" * count)


def _to_pg(sql: str) -> str:
    counter = iter(range(1, 1_000_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


class Tx:
    """One open write transaction."""

    def __init__(self, raw: Any, sqlite: bool) -> None:
        self._raw = raw
        self._sqlite = sqlite

    # On SQLite every call is a round trip to aiosqlite's thread, which the event loop answers
    # only between its other callbacks (on a busy loop, ~1 ms or more each): one call per
    # statement. A statement run to its end leaves its cursor nothing to release, so cursors are
    # not closed (another trip); RETURNING goes through fetch, which reads every row (a
    # half-read statement would make COMMIT fail: "SQL statements in progress").

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement (without RETURNING: use fetch); return the rows it changed."""
        if self._sqlite:
            return (await self._raw.execute(sql, list(params))).rowcount
        count, _ = await self._raw.execute_query(_to_pg(sql), list(params))
        return count

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if self._sqlite:
            await self._raw.executemany(sql, [list(r) for r in rows])
        else:
            await self._raw.execute_many(_to_pg(sql), [list(r) for r in rows])

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a query (or of a statement's RETURNING clause) as dicts."""
        if self._sqlite:
            if self._raw.row_factory is sqlite3.Row:  # tortoise's: rows know their names
                return [dict(row) for row in await self._raw.execute_fetchall(sql, list(params))]
            cursor = await self._raw.execute(sql, list(params))
            rows = await cursor.fetchall()
            names = [d[0] for d in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in rows]
        return list(await self._raw.execute_query_dict(_to_pg(sql), list(params)))


@contextlib.asynccontextmanager
async def write_transaction() -> AsyncIterator[Tx]:
    """``async with write_transaction() as tx:`` commits on success, rolls back on error."""
    client = connections.get("default")
    if client.capabilities.dialect != "sqlite":
        async with in_transaction() as conn:
            yield Tx(conn, sqlite=False)
        return
    # tortoise sends every SQLite query of this process through one aiosqlite connection guarded
    # by its lock; holding that lock keeps ORM queries out of our transaction.
    async with client._lock:  # type: ignore[attr-defined]
        if client._connection is None:  # type: ignore[attr-defined]
            await client.create_connection(with_db=True)
        raw = client._connection  # type: ignore[attr-defined]
        await raw.execute("BEGIN IMMEDIATE")
        try:
            yield Tx(raw, sqlite=True)
        except BaseException:
            await raw.execute("ROLLBACK")
            raise
        await raw.execute("COMMIT")
