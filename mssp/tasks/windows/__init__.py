"""PowerShell scripts of the Windows tasks: constant text, parameters as JSON on stdin, JSON out.

Nothing from a task parameter or the inventory is ever spliced into these scripts: they read one
JSON document from stdin (``[Console]::In.ReadToEnd() | ConvertFrom-Json``), so a user name such as
``$(Remove-Item C:\\ -Recurse)`` is data, never code. The text is constant, which also lets the
lab's simulated Windows host recognise each script (its ``tasks-*.json`` recordings hold them).
They need Windows PowerShell 5.1 and its built-in modules only (CIM, Microsoft.PowerShell.
LocalAccounts, the Windows Update Agent COM API): no third-party module on the host.
"""

from __future__ import annotations

import json
from pathlib import Path

from mssp.errors import TaskError
from mssp.tasks.base import TaskContext

_DIR = Path(__file__).parent


def _load(name: str) -> str:
    return (_DIR / name).read_text(encoding="utf-8")


FACTS = _load("facts.ps1")
"""stdout: one JSON object (see mssp.tasks.parsers.windows.parse_facts)."""
WU_SEARCH = _load("wu_search.ps1")
"""stdin: {"security_only": bool}. stdout: {"reboot_required", "updates": [...]}."""
WU_INSTALL = _load("wu_install.ps1")
"""stdin: {"update_ids": [...]}. stdout: {"result_code", "reboot_required", "updates": [...]}."""
HOTFIXES = _load("hotfixes.ps1")
"""stdout: [{"id": "KB...", "installed_on": "..."}] (Get-HotFix)."""
BOOT_ID = _load("boot_id.ps1")
"""stdout: the last boot time (UTC, ISO 8601): changes exactly when the host rebooted."""
REBOOT_PENDING = _load("reboot_pending.ps1")
"""stdout: {"reboot_required": bool} (WUA system info and the servicing registry markers)."""
REBOOT = _load("reboot.ps1")
"""stdin: {"delay": seconds, "reason": text}. Schedules the restart and returns at once."""
USER_STATE = _load("user_state.ps1")
"""stdin: {"user", "groups": [...]}. stdout: {"exists", "enabled", "groups": [...], ...}."""
USER_APPLY = _load("user_apply.ps1")
"""stdin: {"user", "actions": [{"op": ...}, ...]}. stdout: {"done": [...]}."""
SERVICE_STATUS = _load("service_status.ps1")
"""stdin: {"name"}. stdout: {"exists", "name", "display_name", "status", "start_type"}."""
SERVICE_RESTART = _load("service_restart.ps1")
"""stdin: {"name"}. Restarts the service; stdout as SERVICE_STATUS afterwards."""
RUN_SCRIPT = _load("run_script.ps1")
"""stdin: {"path", "args": [...]}. Runs an uploaded script with splatted arguments, deletes it."""

SCRIPTS = {
    "facts": FACTS,
    "wu_search": WU_SEARCH,
    "wu_install": WU_INSTALL,
    "hotfixes": HOTFIXES,
    "boot_id": BOOT_ID,
    "reboot_pending": REBOOT_PENDING,
    "reboot": REBOOT,
    "user_state": USER_STATE,
    "user_apply": USER_APPLY,
    "service_status": SERVICE_STATUS,
    "service_restart": SERVICE_RESTART,
    "run_script": RUN_SCRIPT,
}


async def run_ps(ctx: TaskContext, script: str, request: object | None = None, *, what: str) -> str:
    """Run one of these scripts with `request` as JSON on stdin; its stdout (JSON text).

    A non-zero exit raises TaskError with PowerShell's own error text (stderr, CLIXML decoded by
    the connector), never with the request (it may carry a password).
    """
    stdin = json.dumps(request if request is not None else {})
    result = await ctx.run(script, stdin=stdin)
    if result.exit_status != 0:
        detail = result.stderr.strip().splitlines()[0] if result.stderr.strip() else ""
        raise TaskError(f"{what} failed on Windows (exit {result.exit_status}): {detail}")
    return result.stdout
