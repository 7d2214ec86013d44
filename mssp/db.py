"""Open and close the database from Settings; apply migrations at start-up under a lock.

SQLite (the embedded default) runs in WAL mode with synchronous=FULL and a busy timeout.
PostgreSQL is selected with MSSP_DATABASE_URL=postgres://... . Migrations live in
``mssp/migrations`` and are applied by tortoise's built-in migration executor.

Migrations on SQLite run over a connection with foreign keys OFF: tortoise rebuilds a table to
alter it, and with foreign keys on, ON DELETE CASCADE would empty every child table
(FIELD-NOTES.md §6). Concurrent start-ups are serialised by a file lock (SQLite) or an advisory
lock (PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from tortoise import Tortoise, connections

from mssp.config import Settings
from mssp.errors import DatabaseError
from mssp.models import MODEL_MODULES

MIGRATIONS_MODULE = "mssp.migrations"
_PG_MIGRATION_LOCK = 0x6D737370  # "mssp"
SQLITE_PRAGMAS = {
    "journal_mode": "WAL",
    "synchronous": "FULL",
    "busy_timeout": 10000,
    "foreign_keys": "ON",
}


def tortoise_config(settings: Settings, *, foreign_keys: bool = True) -> dict[str, Any]:
    """The tortoise configuration dict for these settings."""
    url = settings.effective_database_url
    if url.startswith("sqlite://"):
        path = url[len("sqlite://") :]
        pragmas = dict(SQLITE_PRAGMAS)
        pragmas["foreign_keys"] = "ON" if foreign_keys else "OFF"
        connection: Any = {
            "engine": "tortoise.backends.sqlite",
            "credentials": {"file_path": path, **pragmas},
        }
    elif url.startswith(("postgres://", "postgresql://", "asyncpg://")):
        connection = "asyncpg://" + url.split("://", 1)[1]
    else:
        raise DatabaseError(f"unsupported database URL scheme: {urlsplit(url).scheme!r}")
    return {
        "connections": {"default": connection},
        "apps": {
            "models": {
                "models": MODEL_MODULES,
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


@contextlib.contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


async def migrate(settings: Settings) -> None:
    """Apply every pending migration. Safe to call from several processes at once."""
    from tortoise.migrations.api import migrate as tortoise_migrate

    if settings.is_postgres:
        config = tortoise_config(settings)
        await Tortoise.init(config=config)
        conn = connections.get("default")
        try:
            await conn.execute_query("SELECT pg_advisory_lock($1)", [_PG_MIGRATION_LOCK])
            try:
                await tortoise_migrate(config=config)
            finally:
                await connections.get("default").execute_query(
                    "SELECT pg_advisory_unlock($1)", [_PG_MIGRATION_LOCK]
                )
        finally:
            await Tortoise.close_connections()
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with _file_lock(settings.data_dir / ".migrate.lock"):
        config = tortoise_config(settings, foreign_keys=False)
        try:
            await tortoise_migrate(config=config)
        finally:
            await Tortoise.close_connections()
        if settings.db_path.exists():
            os.chmod(settings.db_path, 0o600)


async def init(settings: Settings, *, run_migrations: bool = True) -> None:
    """Open the database for this process (migrating first unless told not to)."""
    _clear_query_cache()
    try:
        if run_migrations:
            await migrate(settings)
        await Tortoise.init(config=tortoise_config(settings))
    except DatabaseError:
        raise
    except OSError as exc:
        raise DatabaseError(f"cannot open the database: {exc}") from None
    except Exception as exc:  # driver errors: asyncpg, sqlite3, tortoise
        raise DatabaseError(f"cannot open the database: {type(exc).__name__}: {exc}") from None


async def close() -> None:
    await Tortoise.close_connections()
    _clear_query_cache()


def _clear_query_cache() -> None:
    # tortoise caches each model's INSERT statement per connection name, in the dialect of the
    # first backend that used it; a process that opens SQLite then PostgreSQL (the tests) must
    # start afresh.
    from tortoise.backends.base.executor import EXECUTOR_CACHE

    EXECUTOR_CACHE.clear()


@contextlib.asynccontextmanager
async def write_transaction() -> AsyncIterator[Any]:
    """A transaction that holds the database's write lock from its first statement.

    SQLite's default deferred BEGIN lets two processes both read, then fail to upgrade to a write
    ("database is locked", whatever the busy timeout). A no-op write as the first statement takes
    the write lock at once (as BEGIN IMMEDIATE would), so the busy timeout applies and
    read-then-write transactions across processes serialise. On PostgreSQL a plain transaction.
    """
    from tortoise.transactions import in_transaction

    async with in_transaction() as conn:
        if conn.capabilities.dialect == "sqlite":
            await conn.execute_query('DELETE FROM "host_lock" WHERE 0')
        yield conn


_T = TypeVar("_T")
_detached: set[asyncio.Future[Any]] = set()


async def to_completion(work: Awaitable[_T]) -> _T:
    """Run ``work`` (which opens a transaction) to its end even if the caller is cancelled.

    tortoise's SQLite transaction takes its connection lock in ``__aenter__`` and releases it only
    in ``__aexit__``: a cancel that lands while BEGIN runs leaves the lock held, and every later
    transaction of the process then waits forever. Seen: an immediate cancel of a run while a
    host's first connection pinned its key; the run's final states could never be written. Code
    that a cancel can reach mid-connection (pinning, facts) runs its transaction through here: the
    caller still gets its CancelledError, the transaction finishes on its own task.
    """
    task = asyncio.ensure_future(work)
    _detached.add(task)
    task.add_done_callback(_detached.discard)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # never "never retrieved"
    return await asyncio.shield(task)


@contextlib.asynccontextmanager
async def database(settings: Settings, *, run_migrations: bool = True) -> AsyncIterator[None]:
    """``async with database(settings):`` opens, migrates, and closes the database."""
    await init(settings, run_migrations=run_migrations)
    try:
        yield
    finally:
        await close()
