"""restic for Windows through WinRM: constant PowerShell scripts, parameters as JSON on stdin.

Nothing from a parameter is spliced into script text: each script reads one JSON request from
stdin and hands its values to restic.exe as separate arguments (``& $exe @arguments``), so a path
such as ``C:\\x'; Remove-Item C:\\ -Recurse`` is data. The repository and its password travel in
the WinRS shell environment (RESTIC_REPOSITORY / RESTIC_PASSWORD), never on a command line.

Tested against the lab's SIMULATED Windows host: its replies for these scripts are recorded in
mssp/lab/winrm_recordings/backups-windows.json; no real Windows machine ran them here.
restic shows ``C:\\Data\\x`` as ``/C/Data/x`` in snapshots; ``restic_path`` converts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mssp.backups import restic as rx
from mssp.backups.policy import BackupPolicy, Subset
from mssp.connectors.base import CommandResult
from mssp.tasks.base import TaskContext, TaskResult

_DIR = Path(__file__).with_name("ps")


def _load(name: str) -> str:
    return (_DIR / name).read_text(encoding="utf-8")


_PRELUDE = _load("prelude.ps1")
_RUN = """
$output = & $exe @arguments 2>&1 | ForEach-Object { "$_" }
[Console]::Out.Write(($output -join "`n"))
exit $LASTEXITCODE
"""


def _script(body: str) -> str:
    return _PRELUDE + body + _RUN


SNAPSHOTS = _script(
    "$arguments = @('--no-lock', 'snapshots', '--json')\n"
    "if ($request.host) { $arguments += @('--host', [string]$request.host) }"
)
CONFIG = _script("$arguments = @('--no-lock', 'cat', 'config')")
INIT = _script("$arguments = @('init')")
CHECK = _script("$arguments = @('check', ('--read-data-subset=' + [string]$request.subset))")
LS = _script("$arguments = @('--no-lock', 'ls', '--json', [string]$request.snapshot)")
FORGET = _script(
    "$arguments = @('forget', '--host', [string]$request.host, '--tag', 'mssp') + "
    "@($request.keep | ForEach-Object { [string]$_ })\n"
    "if ($request.prune) { $arguments += '--prune' }"
)
BACKUP = _script(
    "$arguments = @('backup', '--json', '--host', [string]$request.host)\n"
    "foreach ($tag in $request.tags) { $arguments += @('--tag', [string]$tag) }\n"
    "if ($request.time) { $arguments += @('--time', [string]$request.time) }\n"
    "$arguments += '--'\n"
    "$arguments += @($request.paths | ForEach-Object { [string]$_ })"
)
INDEXES = _PRELUDE + _load("indexes.ps1")
PLANT = _load("plant.ps1")
RESTORE = _PRELUDE + _load("restore.ps1")

SCRIPTS = {
    "snapshots": SNAPSHOTS,
    "config": CONFIG,
    "init": INIT,
    "check": CHECK,
    "ls": LS,
    "forget": FORGET,
    "backup": BACKUP,
    "indexes": INDEXES,
    "plant": PLANT,
    "restore": RESTORE,
}
"""Every script by name (the recordings test compares them with backups-windows.json)."""

_DRIVE = re.compile(r"^([A-Za-z]):[\\/](.*)$")


def restic_path(path: str) -> str:
    """``C:\\Data\\x`` → ``/C/Data/x`` (restic's form); POSIX paths unchanged."""
    match = _DRIVE.match(path)
    if not match:
        return path
    rest = match.group(2).replace("\\", "/").strip("/")
    return f"/{match.group(1).upper()}/{rest}" if rest else f"/{match.group(1).upper()}"


async def _call(ctx: TaskContext, script: str, request: Mapping[str, Any], env: dict[str, str]):
    return await ctx.run(script, stdin=json.dumps(request), env=env)


class WindowsSteps:
    """gather.Steps for restic.exe through WinRM."""

    def __init__(self, ctx: TaskContext, params: Mapping[str, Any], env: dict[str, str]) -> None:
        self.ctx, self.env = ctx, env
        self.base = {"restic": params["restic"] if params["restic"] != "restic" else "restic.exe"}

    async def _run(self, script: str, **request: Any) -> CommandResult:
        return await _call(self.ctx, script, {**self.base, **request}, self.env)

    async def snapshots(self, host: str) -> CommandResult:
        return await self._run(SNAPSHOTS, host=host)

    async def indexes(self) -> CommandResult:
        return await self._run(INDEXES)

    async def check(self, subset: Subset) -> CommandResult:
        return await self._run(CHECK, subset=str(subset))

    async def ls(self, snapshot_id: str) -> CommandResult:
        return await self._run(LS, snapshot=snapshot_id)

    async def restore(
        self, snapshot_id: str, files: Sequence[str]
    ) -> tuple[rx.RestoreOutput, CommandResult]:
        result = await self._run(RESTORE, snapshot=snapshot_id, files=list(files))
        return parse_restore(result.stdout, len(files)), result


def parse_restore(text: str, count: int) -> rx.RestoreOutput:
    """The RESTORE script's JSON document as the shared RestoreOutput."""
    try:
        data = json.loads(text)
    except ValueError:
        return rx.RestoreOutput(None, 0.0, (), False)
    files = [
        rx.RestoredFacts(
            restored_size=item.get("restored_size"),
            restored_sha256=item.get("restored_sha256") or "",
            live_size=item.get("live_size"),
            live_mtime=item.get("live_mtime"),
            live_sha256=item.get("live_sha256") or "",
            dump_sha256=item.get("dump_sha256") or "",
        )
        for item in (data.get("files") or [])[:count]
    ]
    return rx.RestoreOutput(
        exit_status=data.get("restore_exit"),
        duration=float(data.get("duration") or 0.0),
        files=tuple(files),
        scratch_removed=bool(data.get("scratch_removed")),
    )


def _restic_name(params: Mapping[str, Any]) -> str:
    return params["restic"] if params["restic"] != "restic" else "restic.exe"


async def repository_exists(ctx: TaskContext, params: Mapping[str, Any], env: dict[str, str]):
    result = await _call(ctx, CONFIG, {"restic": _restic_name(params)}, env)
    if result.ok:
        return True
    access, message = rx.classify_failure(result.exit_status, result.stdout + result.stderr)
    if access.value == "no-repository":
        return False
    from mssp.errors import TaskError

    raise TaskError(f"cannot tell whether the repository exists: {access.value} {message}".strip())


async def init(ctx: TaskContext, params: Mapping[str, Any], env: dict[str, str]) -> str:
    result = await _call(ctx, INIT, {"restic": _restic_name(params)}, env)
    result.check()
    return rx.parse_init(result.stdout)


async def backup(
    ctx: TaskContext,
    params: Mapping[str, Any],
    env: dict[str, str],
    policy: BackupPolicy,
    *,
    host: str,
    tags: list[str],
    canary_content: str,
) -> TaskResult:
    """Plant the canary (if any), back up, apply retention: the same result data as on Linux."""
    exe = _restic_name(params)
    data: dict[str, Any] = {"repository": rx.display_repository(params["repository"])}
    if params["canary"]:
        planted = await _call(
            ctx, PLANT, {"path": params["canary"], "content": canary_content}, env
        )
        if not planted.ok:
            return TaskResult.failed(f"could not plant the canary {params['canary']}",
                                     command=planted)  # fmt: skip
        data["canary"] = {"path": params["canary"], "sha256": planted.stdout.strip()}
    request = {"restic": exe, "host": host, "tags": tags, "time": params["time"],
               "paths": list(params["paths"])}  # fmt: skip
    result = await _call(ctx, BACKUP, request, env)
    if result.exit_status not in (0, 3):
        access, message = rx.classify_failure(result.exit_status, result.stdout)
        return TaskResult.failed(f"restic backup failed: {access.value} {message}".strip(),
                                 command=result, data=data)  # fmt: skip
    summary = rx.parse_backup(result.stdout)
    data["snapshot"] = {
        "id": summary.snapshot_id,
        "files_new": summary.files_new,
        "files_changed": summary.files_changed,
        "data_added": summary.data_added,
        "total_bytes": summary.total_bytes,
        "duration": summary.duration,
    }
    message = f"snapshot {summary.snapshot_id}: {summary.files_new} new files"
    if params["forget"] and policy.retention_args():
        forget = await _call(ctx, FORGET, {"restic": exe, "host": host,
                                           "keep": policy.retention_args(),
                                           "prune": params["prune"]}, env)  # fmt: skip
        if not forget.ok:
            return TaskResult.failed(message + "; forget/prune failed", command=forget, data=data)
        message += "; retention applied"
    if result.exit_status == 3:
        return TaskResult.failed(message + "; some files could not be read", data=data)
    return TaskResult.changed(message, data=data)
