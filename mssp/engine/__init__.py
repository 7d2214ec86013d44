"""Fleet runs: one task over a target selection, in waves, within limits, crash-safe.

``Engine`` is the entry point (mssp.engine.core); ``RunOptions`` says how a run goes and
``RunSummary`` what it did. DESIGN.md §4 lists the promises this package keeps.

Names load on first use (PEP 562): a command that hands its run to the daemon needs only
``RunOptions``/``RunSummary`` and must not pay for the ORM and SSH imports behind ``Engine``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mssp.engine.core import Engine
    from mssp.engine.hosts import StaticHosts, StoreHosts
    from mssp.engine.options import HostSummary, RunOptions, RunSummary, parse_duration
    from mssp.engine.queries import list_runs, load_summary
    from mssp.engine.state import HostState, RunState, exit_code_for

_WHERE = {
    "Engine": "core",
    "StaticHosts": "hosts",
    "StoreHosts": "hosts",
    "HostSummary": "options",
    "RunOptions": "options",
    "RunSummary": "options",
    "parse_duration": "options",
    "list_runs": "queries",
    "load_summary": "queries",
    "HostState": "state",
    "RunState": "state",
    "exit_code_for": "state",
}

__all__ = [
    "Engine",
    "HostState",
    "HostSummary",
    "RunOptions",
    "RunState",
    "RunSummary",
    "StaticHosts",
    "StoreHosts",
    "exit_code_for",
    "list_runs",
    "load_summary",
    "parse_duration",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
