"""A database that refuses some writes, on SQLite and PostgreSQL alike: a trigger that aborts.

Used to prove what the code does when the database refuses a write (a value it cannot store, a
full disk, an audit table that cannot be appended to) without mocking the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tortoise import connections


@asynccontextmanager
async def refusing(table: str, event: str, condition: str = "1 = 1") -> AsyncIterator[None]:
    """While inside, ``event`` (INSERT or UPDATE) on ``table`` fails whenever the NEW row meets
    ``condition`` (SQL over NEW.*). Dropped on the way out: the PostgreSQL test database is
    shared by the whole session."""
    conn = connections.get("default")
    name = f"mssp_test_refuse_{table}"
    if conn.capabilities.dialect == "postgres":
        await conn.execute_script(
            f"CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN "
            f"IF {condition} THEN RAISE EXCEPTION 'refused by the test trigger'; END IF; "
            "RETURN NEW; END $$ LANGUAGE plpgsql; "
            f"CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW "
            f"EXECUTE FUNCTION {name}();"
        )
        drop = f"DROP TRIGGER {name} ON {table}; DROP FUNCTION {name}();"
    else:
        await conn.execute_script(
            f"CREATE TRIGGER {name} BEFORE {event} ON {table} WHEN {condition} "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END;"
        )
        drop = f"DROP TRIGGER {name};"
    try:
        yield
    finally:
        await conn.execute_script(drop)
