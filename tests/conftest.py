"""Shared fixtures: isolated settings, and a database on each backend (SQLite and PostgreSQL).

Every data-layer test takes ``db`` and so runs twice: on a fresh SQLite file and on a PostgreSQL
database (127.0.0.1:5432, trust auth) truncated between tests. PostgreSQL missing is a failure,
never a skip: `make test` starts it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mssp import db as mssp_db
from mssp.config import Settings, load_settings

#: fixtures shared by several test packages
pytest_plugins = ["tests.receivers"]

T = TypeVar("T")

PG_ADMIN_URL = os.environ.get("MSSP_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh loop in a thread (safe inside a running loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture
def mssp_home(tmp_path: Path) -> Path:
    home = tmp_path / "mssp-home"
    home.mkdir()
    return home


@pytest.fixture
def settings(mssp_home: Path) -> Settings:
    return load_settings({"MSSP_HOME": str(mssp_home)})


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database made once per session and copied for each test."""
    home = tmp_path_factory.mktemp("sqlite-template")
    settings = load_settings({"MSSP_HOME": str(home)})
    run_sync(mssp_db.migrate(settings))
    return settings.db_path


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL + "/postgres", timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database for this test session, migrated once, dropped at the end."""
    name = f"mssp_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        run_sync(_pg_admin(f'CREATE DATABASE "{name}"'))
    except OSError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({exc}); `make test` starts it",
            pytrace=False,
        )
    url = f"{PG_ADMIN_URL}/{name}"
    home = Path(f"/tmp/{name}")
    home.mkdir(exist_ok=True)
    run_sync(mssp_db.migrate(load_settings({"MSSP_HOME": str(home), "MSSP_DATABASE_URL": url})))
    yield url
    run_sync(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    shutil.rmtree(home, ignore_errors=True)


async def _truncate_all() -> None:
    from tortoise import Tortoise, connections

    tables = [
        model._meta.db_table
        for model in Tortoise.apps["models"].values()  # type: ignore[index]
    ]
    conn = connections.get("default")
    await conn.execute_script(
        "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"
    )


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, mssp_home: Path) -> AsyncIterator[Settings]:
    """An open, migrated, empty database on each backend; yields the Settings that point at it."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        settings = load_settings({"MSSP_HOME": str(mssp_home)})
        shutil.copy(template, settings.db_path)
        await mssp_db.init(settings, run_migrations=False)
    else:
        url: str = request.getfixturevalue("pg_database")
        settings = load_settings({"MSSP_HOME": str(mssp_home), "MSSP_DATABASE_URL": url})
        await mssp_db.init(settings, run_migrations=False)
        await _truncate_all()
    try:
        yield settings
    finally:
        await mssp_db.close()
