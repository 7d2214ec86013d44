"""Developer helper: write a new migration in mssp/migrations from model changes.

Usage:
  .venv/bin/python scripts/makemigrations.py NAME   # write mssp/migrations/000N_NAME.py
  .venv/bin/python scripts/makemigrations.py --check  # exit 1 if models have unmigrated changes
"""

from __future__ import annotations

import asyncio
import sys
import tempfile

from tortoise.cli.cli import tortoise_cli_context
from tortoise.migrations.autodetector import MigrationAutodetector
from tortoise.migrations.writer import format_migration_name

from mssp.config import load_settings
from mssp.db import tortoise_config


async def main(argv: list[str]) -> int:
    check = "--check" in argv
    names = [a for a in argv if not a.startswith("-")]
    with tempfile.TemporaryDirectory() as home:
        config = tortoise_config(load_settings({"MSSP_HOME": home}))
        apps = config["apps"]
        async with tortoise_cli_context(config) as ctx:
            writers = await MigrationAutodetector(ctx.apps, apps).changes()
    if not writers:
        print("No changes detected")
        return 0
    if check:
        print("Model changes without a migration: run scripts/makemigrations.py NAME")
        return 1
    for writer in writers:
        if names:
            number = int(writer.name.split("_", 1)[0])
            writer.name = format_migration_name(number, names[0])
        print("Created", writer.write())
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
