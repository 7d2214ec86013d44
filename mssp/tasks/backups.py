"""Backup tasks: backup.init, backup.run and backup.verify (restic), on Linux over SSH and on
Windows through WinRM (mssp.backups.windows).

The repository password is a vault credential named by the ``password`` parameter; the task asks
for it in ``secrets`` and hands it to restic as RESTIC_PASSWORD in the environment, never on a
command line. The repository location travels the same way (a URL may hold a user and password).
backup.verify only reads: its restore goes to a scratch directory that is removed afterwards; the
evidence and the verdict (mssp.backups.verify) are the host's result data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import secrets as random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from mssp.backups import restic as rx
from mssp.backups.evidence import Access
from mssp.backups.gather import PosixSteps, Request, Steps, gather
from mssp.backups.policy import BackupPolicy, Subset
from mssp.backups.verify import BackupState, decide
from mssp.errors import ParameterError, TaskError
from mssp.tasks import validate
from mssp.tasks.base import Param, Plan, Task, TaskContext, TaskResult, register


def _repository(value: Any) -> None:
    if not value.strip() or any(c in value for c in "\x00\n\r"):
        raise ParameterError("the repository must be one non-empty line")


def _binary(value: Any) -> None:
    if value != "restic":
        validate.absolute_path(value)


def _time(value: Any) -> None:
    if value:
        try:
            datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
        except ValueError:
            raise ParameterError(f"time {value!r} must be 'YYYY-MM-DD HH:MM:SS'") from None


def _subset(value: Any) -> None:
    if value:
        n, _, total = value.partition("/")
        if not (n.isdigit() and total.isdigit() and 1 <= int(n) <= int(total) <= 255):
            raise ParameterError(f"subset {value!r} must be n/N with 1 <= n <= N <= 255")


_WINDOWS_PATH = re.compile(r"[A-Za-z]:\\(?:[^\x00-\x1f\"*?<>|:]+)?")


def _path(value: Any) -> None:
    """A POSIX absolute path (safe characters) or a Windows drive path (sent as JSON data)."""
    if isinstance(value, str) and _WINDOWS_PATH.fullmatch(value) and "\\..\\" not in value + "\\":
        return
    validate.absolute_path(value)


def _optional_path(value: Any) -> None:
    if value:
        _path(value)


_COMMON = (
    Param(
        "repository",
        str,
        help="restic repository: a path, sftp:, rest:, s3:...",
        validate=_repository,
    ),
    Param(
        "password",
        str,
        help="vault credential holding the repository password",
        validate=validate.credential_name,
    ),
    Param("restic", str, default="restic", help="restic binary on the host", validate=_binary),
    Param(
        "snapshot_host",
        str,
        default="",
        help="restic host name of the snapshots (default: the inventory host name)",
    ),
)


class _ResticTask(Task):
    """Shared parameter handling: the password credential is this task's one secret."""

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(params)
        # the credential is named per run, so the secret list is per instance
        self.secrets = (self.params["password"],)  # type: ignore[misc]
        host = self.params["snapshot_host"]
        if host and (not host.replace("-", "").replace(".", "").replace("_", "").isalnum()):
            raise ParameterError(f"snapshot_host {host!r} must be a plain host name")

    def restic(self) -> rx.Restic:
        return rx.Restic(self.params["restic"])

    def env(self, ctx: TaskContext) -> dict[str, str]:
        secret = ctx.secrets.get(self.params["password"])
        if secret is None:
            raise TaskError(f"the vault did not provide credential {self.params['password']!r}")
        return rx.environment(self.params["repository"], secret.reveal())

    def snapshot_host(self, ctx: TaskContext) -> str:
        return self.params["snapshot_host"] or ctx.host.name

    @property
    def shown_repository(self) -> str:
        return rx.display_repository(self.params["repository"])

    @staticmethod
    def windows(ctx: TaskContext) -> bool:
        return ctx.host.transport == "winrm" or getattr(ctx.conn, "transport", "") == "winrm"

    def scrubbed(self, ctx: TaskContext, result: TaskResult) -> TaskResult:
        """The result with the repository password and any URL credentials blanked: restic
        echoes repository URLs (user:password included) in some of its messages."""
        shown = self.shown_repository
        swaps = [(self.params["repository"], shown)]
        secret = ctx.secrets.get(self.params["password"])
        if secret is not None:
            swaps.append((secret.reveal(), "****"))
        swaps = [(value, by) for value, by in swaps if value and value != by]
        if not swaps:
            return result

        def clean(text: str) -> str:
            for value, by in swaps:
                text = text.replace(value, by)
            return text

        data = json.loads(clean(json.dumps(dict(result.data))))
        return dataclasses.replace(
            result,
            message=clean(result.message),
            stdout=clean(result.stdout),
            stderr=clean(result.stderr),
            data=data,
        )

    async def verify(self, ctx: TaskContext, plan: Plan, result: TaskResult) -> TaskResult:
        return self.scrubbed(ctx, result)


@register
class BackupInitTask(_ResticTask):
    """Create a restic repository unless one already opens with this password."""

    name = "backup.init"
    summary = "Create a restic repository (password from the vault)"
    params = _COMMON

    async def check(self, ctx: TaskContext) -> Plan:
        if self.windows(ctx):
            from mssp.backups import windows

            exists = await windows.repository_exists(ctx, self.params, self.env(ctx))
        else:
            result = await ctx.run(self.restic().config_exists(), env=self.env(ctx))
            exists = result.ok
            if not exists:
                access, message = rx.classify_failure(result.exit_status, result.stderr)
                if access is not Access.NO_REPOSITORY:
                    raise TaskError(
                        f"cannot tell whether {self.shown_repository} exists: {access.value}"
                        + (f" ({message})" if message else "")
                    )
        if exists:
            return Plan()
        return Plan(changes=(f"create restic repository {self.shown_repository}",))

    async def apply(self, ctx: TaskContext, plan: Plan) -> TaskResult:
        if self.windows(ctx):
            from mssp.backups import windows

            repo_id = await windows.init(ctx, self.params, self.env(ctx))
            return TaskResult.changed(
                f"created repository {repo_id}", data={"repository_id": repo_id}
            )
        result = await ctx.run(self.restic().init(), env=self.env(ctx))
        if not result.ok:
            return TaskResult.failed("restic init failed", command=result)
        repo_id = rx.parse_init(result.stdout)
        return TaskResult.changed(
            f"created restic repository {repo_id} at {self.shown_repository}",
            command=result,
            data={"repository_id": repo_id, "repository": self.shown_repository},
        )


@register
class BackupRunTask(_ResticTask):
    """Back up paths, optionally planting a canary whose hash the snapshot records; retention."""

    name = "backup.run"
    summary = "restic backup of chosen paths, then forget/prune per the retention policy"
    params = (
        *_COMMON,
        Param(
            "paths",
            list,
            help="absolute paths to back up (comma-separated)",
            validate=validate.each(_path),
        ),
        Param(
            "canary",
            str,
            default="",
            help="canary file to plant (inside paths)",
            validate=_optional_path,
        ),
        Param("keep_daily", int, default=7),
        Param("keep_weekly", int, default=4),
        Param("keep_monthly", int, default=12),
        Param("forget", bool, default=True, help="apply the retention policy after the backup"),
        Param("prune", bool, default=True, help="prune unreferenced data after forget"),
        Param(
            "time",
            str,
            default="",
            help="snapshot time 'YYYY-MM-DD HH:MM:SS' (restic --time)",
            validate=_time,
        ),
    )

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(params)
        if not self.params["paths"]:
            raise ParameterError("backup.run needs at least one path")
        canary = self.params["canary"].replace("\\", "/").lower()
        paths = [p.replace("\\", "/").rstrip("/").lower() for p in self.params["paths"]]
        if canary and not any(canary == p or canary.startswith(p + "/") for p in paths):
            raise ParameterError(f"the canary {canary} is not inside the backed-up paths")
        self.policy = BackupPolicy(
            keep_daily=self.params["keep_daily"],
            keep_weekly=self.params["keep_weekly"],
            keep_monthly=self.params["keep_monthly"],
        )

    async def check(self, ctx: TaskContext) -> Plan:
        changes = [f"back up {', '.join(self.params['paths'])} to {self.shown_repository}"]
        if self.params["canary"]:
            changes.insert(0, f"plant canary {self.params['canary']}")
        if self.params["forget"] and self.policy.retention_args():
            keep = " ".join(self.policy.retention_args())
            changes.append(f"forget {keep}" + (" and prune" if self.params["prune"] else ""))
        return Plan(changes=tuple(changes))

    async def apply(self, ctx: TaskContext, plan: Plan) -> TaskResult:
        env = self.env(ctx)
        tags = [rx.MSSP_TAG]
        data: dict[str, Any] = {"repository": self.shown_repository}
        canary = self.params["canary"]
        # the canary's content is made here, so its hash is known without trusting the host
        content = f"mssp canary {datetime.now(UTC).isoformat()} {random.token_hex(16)}\n"
        digest = hashlib.sha256(content.encode()).hexdigest()
        if canary:
            tags.append(rx.CANARY_TAG + digest)
        if self.windows(ctx):
            from mssp.backups import windows

            return await windows.backup(
                ctx, self.params, env, self.policy,
                host=self.snapshot_host(ctx), tags=tags, canary_content=content,
            )  # fmt: skip
        if canary:
            folder = canary.rsplit("/", 1)[0] or "/"
            q = validate.quote
            planted = await ctx.run(
                f"mkdir -p {q(folder)} && cat > {q(canary + '.tmp')} "
                f"&& mv {q(canary + '.tmp')} {q(canary)}",
                stdin=content,
            )
            if not planted.ok:
                return TaskResult.failed(f"could not plant the canary {canary}", command=planted)
            data["canary"] = {"path": canary, "sha256": digest}
        host = self.snapshot_host(ctx)
        command = self.restic().backup(
            self.params["paths"], host=host, tags=tags, time=self.params["time"]
        )
        result = await ctx.run(command, env=env)
        # exit 3: snapshot made, but some files could not be read
        if result.exit_status not in (0, 3):
            access, message = rx.classify_failure(result.exit_status, result.stderr)
            return TaskResult.failed(
                f"restic backup failed: {access.value}" + (f" ({message})" if message else ""),
                command=result,
                data=data,
            )
        summary = rx.parse_backup(result.stdout)
        data["snapshot"] = {
            "id": summary.snapshot_id,
            "files_new": summary.files_new,
            "files_changed": summary.files_changed,
            "data_added": summary.data_added,
            "total_bytes": summary.total_bytes,
            "duration": summary.duration,
        }
        message = (
            f"snapshot {summary.snapshot_id}: {summary.files_new} new, "
            f"{summary.files_changed} changed files"
        )
        if result.exit_status == 3:
            data["incomplete"] = True
            message += "; some files could not be read (restic exit 3)"
        if self.params["forget"] and self.policy.retention_args():
            forget = await ctx.run(
                self.restic().forget(
                    host=host, keep=self.policy.retention_args(), prune=self.params["prune"]
                ),
                env=env,
            )
            data["forget"] = {"exit_status": forget.exit_status, "duration": forget.duration}
            if not forget.ok:
                return TaskResult.failed(
                    message + "; forget/prune failed", command=forget, data=data
                )
            message += "; retention applied"
        if result.exit_status == 3:
            return TaskResult.failed(message, command=result, data=data)
        return TaskResult.changed(message, data=data)

    async def verify(self, ctx: TaskContext, plan: Plan, result: TaskResult) -> TaskResult:
        return self.scrubbed(ctx, await self._confirm(ctx, result))

    async def _confirm(self, ctx: TaskContext, result: TaskResult) -> TaskResult:
        """The snapshot the backup reported is really in the repository's list."""
        snapshot = (result.data or {}).get("snapshot", {}).get("id")
        if result.status != "changed" or not snapshot or self.windows(ctx):
            return result
        listed = await ctx.run(self.restic().snapshots(self.snapshot_host(ctx)), env=self.env(ctx))
        if not listed.ok or not any(
            s.short_id == snapshot or s.id.startswith(snapshot)
            for s in rx.parse_snapshots(listed.stdout)
        ):
            return TaskResult.failed(
                f"snapshot {snapshot} is not listed after the backup", data=result.data
            )
        return result


@register
class BackupVerifyTask(_ResticTask):
    """Restore-verified backup check: VERIFIED, STALE, CORRUPT, UNVERIFIABLE or NOT_RUN."""

    name = "backup.verify"
    summary = "Verify a backup: age, repository check, read subset, restore and hash"
    params = (
        *_COMMON,
        Param("max_age_hours", float, default=26.0, help="newest snapshot must be younger"),
        Param("subset_nights", int, default=7, help="nights the read subset rotates over"),
        Param("sample_max_mb", int, default=64, help="largest file sampled for the restore"),
        Param(
            "canary", str, default="", help="canary file the backup plants", validate=_optional_path
        ),
        Param(
            "subset",
            str,
            default="",
            help="read this group n/N instead of tonight's (re-check a night's group)",
            validate=_subset,
        ),
        Param(
            "scratch",
            str,
            default="/var/tmp",  # noqa: S108 (a fresh mktemp -d below it)
            help="where the scratch restore goes",
            validate=validate.absolute_path,
        ),
    )

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(params)
        if self.params["max_age_hours"] <= 0:
            raise ParameterError("max_age_hours must be positive")
        self.policy = BackupPolicy(
            max_age=timedelta(hours=self.params["max_age_hours"]),
            subset_nights=self.params["subset_nights"],
            sample_max_bytes=self.params["sample_max_mb"] * 1024 * 1024,
        )

    async def check(self, ctx: TaskContext) -> Plan:
        return Plan(
            changes=(
                f"verify {self.shown_repository}: snapshot age, check with a read subset of "
                f"1/{self.policy.subset_nights}, restore a sample to {self.params['scratch']}",
            )
        )

    async def apply(self, ctx: TaskContext, plan: Plan) -> TaskResult:
        now = datetime.now(UTC)
        subset = None
        if self.params["subset"]:
            n, _, total = self.params["subset"].partition("/")
            subset = Subset(int(n), int(total))
        if self.windows(ctx):
            from mssp.backups import windows

            steps: Steps = windows.WindowsSteps(ctx, self.params, self.env(ctx))
            canary = windows.restic_path(self.params["canary"])
        else:
            steps = PosixSteps(ctx, self.restic(), self.env(ctx), self.params["scratch"])
            canary = self.params["canary"]
        request = Request(
            repository=self.shown_repository,
            snapshot_host=self.snapshot_host(ctx),
            policy=self.policy,
            canary=canary,
            subset=subset,
        )
        evidence = await gather(steps, request, now)
        verdict = decide(evidence, self.policy, datetime.now(UTC))
        data = {
            "backup": {
                "state": verdict.state.value,
                "reason": verdict.reason,
                "checked_at": now.isoformat(),
                "evidence": evidence.to_json(),
            }
        }
        message = f"{verdict.state.value}: {verdict.reason}"
        if verdict.state is BackupState.VERIFIED:
            return TaskResult.ok(message, data=data)
        return TaskResult.failed(message, data=data)
