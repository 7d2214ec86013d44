"""Fleet runs: one task over a target selection, in waves, within limits, crash-safe.

``Engine`` is the entry point (mssp.engine.core); ``RunOptions`` says how a run goes and
``RunSummary`` what it did. DESIGN.md §4 lists the promises this package keeps.
"""

from mssp.engine.core import Engine
from mssp.engine.hosts import StaticHosts, StoreHosts
from mssp.engine.options import HostSummary, RunOptions, RunSummary, parse_duration
from mssp.engine.queries import list_runs, load_summary
from mssp.engine.state import HostState, RunState, exit_code_for

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
