"""Shared plumbing for CLI commands: settings, the database, async, JSON output, error mapping."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from mssp.config import Settings, load_settings
from mssp.errors import MsspError
from mssp.log import setup_logging

T = TypeVar("T")


@dataclass
class CliContext:
    """Per-invocation state: settings are loaded on first use, once."""

    verbosity: int = 0
    _settings: Settings | None = field(default=None)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
            setup_logging(self._settings, self.verbosity)
        return self._settings


pass_cli = click.make_pass_decorator(CliContext, ensure=True)


def run_async(coro: Awaitable[T]) -> T:
    """Run a coroutine to completion as the body of a command."""
    return asyncio.run(coro)  # type: ignore[arg-type]


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --json to a command that prints results."""
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(func)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Print rows as an aligned plain-text table (no colours: output is often piped)."""
    if not rows:
        click.echo("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        click.echo("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns).rstrip())


@contextlib.contextmanager
def handle_errors() -> Iterator[None]:
    """Turn MsspError into a one-line message on stderr and its exit code; Ctrl-C into 130."""
    try:
        yield
    except MsspError as exc:
        click.echo(f"error: {exc.title}: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


def note(message: str) -> None:
    """A side remark of a session command (stderr, marked, never mixed into the output)."""
    click.echo(f"[mssp] {message}", err=True)
