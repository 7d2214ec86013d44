"""Shared bits of the two console scripts: error printing, JSON output, signal-driven shutdown."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable
from typing import Any

from relay.errors import ConfigError, RegistryError, RelayError, TokenError

EXIT_USAGE = 2
EXIT_FAILURE = 1


def emit(data: Any, as_json: bool, text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if as_json else text)


def run_guarded(fn: Callable[[], int]) -> int:
    """Run a command; relay errors become one clear line on stderr and an exit code."""
    try:
        return fn()
    except (ConfigError, TokenError, RegistryError) as exc:
        print(f"error: {exc.title}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RelayError as exc:
        print(f"error: {exc.title}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


def stop_on_signals(stop: Callable[[], None]) -> None:
    """Call ``stop`` once on SIGINT or SIGTERM (the loop must be running)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
