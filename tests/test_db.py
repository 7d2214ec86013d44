"""The database layer on both backends: migrations, pragmas, concurrent start-ups."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from tortoise import connections

from mssp import db as mssp_db
from mssp.config import Settings
from mssp.models.inventory import Client, Host, Site


async def test_models_round_trip(db: Settings) -> None:
    client = await Client.create(slug="acme", name="Acme Dental", timezone="Europe/Berlin")
    site = await Site.create(client=client, slug="main", name="Main office")
    await Host.create(site=site, name="fs01", address="192.0.2.10", tags="fileserver")
    host = await Host.get(name="fs01").prefetch_related("site__client")
    assert host.site.client.timezone == "Europe/Berlin"


async def test_sqlite_pragmas_in_effect(db: Settings) -> None:
    if db.is_postgres:
        return
    conn = connections.get("default")
    journal = await conn.execute_query_dict("PRAGMA journal_mode")
    sync = await conn.execute_query_dict("PRAGMA synchronous")
    fks = await conn.execute_query_dict("PRAGMA foreign_keys")
    assert journal[0]["journal_mode"] == "wal"
    assert sync[0]["synchronous"] == 2  # FULL
    assert fks[0]["foreign_keys"] == 1


def test_migrations_match_models(settings: Settings) -> None:
    """No model change is left without a migration file."""
    out = subprocess.run(
        [sys.executable, "scripts/makemigrations.py", "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "No changes detected" in out.stdout + out.stderr, out.stdout + out.stderr


def test_concurrent_startups_migrate_once(settings: Settings) -> None:
    """Several processes starting at once all succeed (migrations run under a lock)."""
    code = (
        "import asyncio; from mssp.config import load_settings; from mssp import db;"
        f"asyncio.run(db.migrate(load_settings({{'MSSP_HOME': {str(settings.data_dir)!r}}})))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(6)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 6

    async def count() -> int:
        async with mssp_db.database(settings):
            return await Client.all().count()

    assert asyncio.run(count()) == 0


_WRITER = """
import asyncio, sys
from mssp.config import load_settings
from mssp import db
from mssp.models.inventory import Client

async def main():
    async with db.database(load_settings({'MSSP_HOME': sys.argv[1]}), run_migrations=False):
        for _ in range(15):
            async with db.write_transaction():
                n = await Client.all().count()
                await Client.create(slug=f"c{n}", name=str(n))

asyncio.run(main())
"""


def test_write_transactions_serialise_across_processes(settings: Settings) -> None:
    """Read-then-write from several processes on one SQLite file: no lost update, no failure."""

    async def prepare() -> None:
        await mssp_db.migrate(settings)

    asyncio.run(prepare())
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(settings.data_dir)]) for _ in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * 4

    async def count() -> int:
        async with mssp_db.database(settings):
            return await Client.all().count()

    assert asyncio.run(count()) == 60
