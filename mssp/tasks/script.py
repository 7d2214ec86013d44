"""The script task: run a local script file on every target, arguments passed safely.

The file is uploaded with the connector's verified ``put_file`` (SHA-256 compared on the far
side) into a private place: on Linux a fresh ``mktemp -d`` directory (0700), on Windows a random
name under C:\\Windows\\Temp. Linux arguments are single-quoted words (``shlex.quote``) after
validation; Windows arguments travel as JSON on stdin and are splatted, never parsed as code.
The upload is removed afterwards whatever the script did.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from mssp.errors import ParameterError, TaskError
from mssp.tasks import validate
from mssp.tasks.base import Param, Plan, Task, TaskContext, TaskResult, register
from mssp.tasks.reboot import as_root, is_windows
from mssp.tasks.windows import RUN_SCRIPT

MAX_SCRIPT = 4 * 1024 * 1024
INTERPRETERS = ("auto", "sh", "bash", "powershell")


def _local_script(value: str) -> None:
    path = Path(value).expanduser()
    if not path.is_file():
        raise ParameterError(f"no script file {value!r}")
    if path.stat().st_size > MAX_SCRIPT:
        raise ParameterError(f"{value!r} is larger than {MAX_SCRIPT // 1024 // 1024} MiB")


@register
class ScriptTask(Task):
    """Upload and run a POSIX shell or PowerShell script; ok on exit 0."""

    name = "script"
    summary = "Run a local script file (sh or PowerShell) on the hosts"
    destructive = True
    params = (
        Param("path", str, help="Local script file", validate=_local_script),
        Param("args", list, default=[], validate=validate.each(validate.script_argument)),
        Param("interpreter", str, default="auto", choices=INTERPRETERS),
        Param("become", bool, default=False, help="Run through sudo (Linux)"),
    )

    async def check(self, ctx: TaskContext) -> Plan:
        return Plan(changes=(f"run script {Path(self.params['path']).name}",), predictable=False)

    async def apply(self, ctx: TaskContext, plan: Plan) -> TaskResult:
        local = Path(self.params["path"]).expanduser()  # noqa: ASYNC240 (no I/O: a name)
        interpreter = self.params["interpreter"]
        if is_windows(ctx):
            if interpreter not in ("auto", "powershell"):
                raise TaskError(f"{interpreter} scripts cannot run on Windows hosts")
            remote = f"C:\\Windows\\Temp\\mssp-script-{secrets.token_hex(8)}.ps1"
            await ctx.conn.put_file(local, remote)

            result = await ctx.run(
                RUN_SCRIPT, stdin=json.dumps({"path": remote, "args": self.params["args"]})
            )
        else:
            if interpreter == "powershell":
                raise TaskError("PowerShell scripts run on Windows hosts only")
            made = await ctx.run("mktemp -d /tmp/mssp-script.XXXXXXXXXX", timeout=30, check=True)
            directory = made.stdout.strip()
            validate.absolute_path(directory)
            remote = f"{directory}/script"
            try:
                await ctx.conn.put_file(local, remote, mode=0o700)
                shell = "bash" if interpreter == "bash" else "sh"
                words = validate.quote_all([remote, *self.params["args"]])
                result = await ctx.run(
                    f"{shell} {words}", become=self.params["become"] or (None and as_root(ctx))
                )
            finally:
                await ctx.run(f"rm -rf {validate.quote(directory)}", timeout=30)
        if result.exit_status == 0:
            return TaskResult.ok("exit 0", command=result)
        return TaskResult.failed(f"exit status {result.exit_status}", command=result)
