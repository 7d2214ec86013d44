"""Gathering a verification's evidence on a host: the same steps over SSH (restic under sh) and
WinRM (restic.exe under PowerShell, mssp.backups.windows), behind one small ``Steps`` seam.

Order: list snapshots (can we open the repository at all?) → read the index (pack sizes) →
``check --read-data-subset`` of tonight's group → list the newest snapshot → restore a rotating
sample and the canary into a scratch directory, hash, remove the scratch directory.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from mssp.backups import restic as rx
from mssp.backups.evidence import Access, Evidence, RestoredFile, RestoreProblem
from mssp.backups.policy import BackupPolicy, Subset
from mssp.connectors.base import CommandResult

DAMAGE_WORDS = (
    "does not match",
    "ciphertext verification failed",
    "unexpected eof",
    "invalid data",
    "checksum",
    "decrypting blob",
    "load(<data/",
)
_ACCESS_PROBLEMS = (Access.LOCKED, Access.WRONG_PASSWORD, Access.UNREACHABLE, Access.TOOL_MISSING)


class Steps(Protocol):
    """restic on one host. Every result's ``stdout`` holds restic's output (check: merged)."""

    async def snapshots(self, host: str) -> CommandResult: ...
    async def indexes(self) -> CommandResult: ...
    async def check(self, subset: Subset) -> CommandResult: ...
    async def ls(self, snapshot_id: str) -> CommandResult: ...
    async def restore(
        self, snapshot_id: str, files: Sequence[str]
    ) -> tuple[rx.RestoreOutput, CommandResult]: ...


@dataclass(frozen=True)
class Request:
    """What to verify and how."""

    repository: str
    """As shown (no credentials)."""
    snapshot_host: str
    policy: BackupPolicy
    canary: str = ""
    """In restic's path form (``/C/Data/x`` for ``C:\\Data\\x``)."""
    subset: Subset | None = None
    """A fixed group instead of tonight's."""


async def gather(steps: Steps, request: Request, now: datetime) -> Evidence:
    base = Evidence(
        repository=request.repository,
        snapshot_host=request.snapshot_host,
        canary_path=request.canary,
    )
    durations: dict[str, float] = {}

    async def step(name: str, call: Any) -> Any:
        started = time.monotonic()
        try:
            return await call
        finally:
            durations[name] = round(time.monotonic() - started, 3)

    def ended(**changes: Any) -> Evidence:
        return dataclasses.replace(base, durations=dict(durations), **changes)

    listed = await step("snapshots", steps.snapshots(request.snapshot_host))
    if not listed.ok:
        access, message = rx.classify_failure(listed.exit_status, listed.stderr + listed.stdout)
        return ended(access=access, access_message=message)
    try:
        snapshots = rx.parse_snapshots(listed.stdout)
    except (ValueError, KeyError, TypeError):
        return ended(access=Access.ERROR, access_message="restic printed an unreadable list")
    if not snapshots:
        return ended(snapshot_count=0)
    latest = snapshots[-1]
    base = dataclasses.replace(base, snapshot_count=len(snapshots), latest=latest)

    indexed = await step("index", steps.indexes())
    try:
        packs = rx.parse_indexes(indexed.stdout) if indexed.ok else {}
    except (ValueError, KeyError, TypeError):
        packs = {}
    subset = request.subset or rx.choose_subset(request.policy.subset_for(now.date()), packs)
    checked = await step("check", steps.check(subset))
    access, message = rx.classify_failure(checked.exit_status, checked.stdout + checked.stderr)
    if not checked.ok and access in _ACCESS_PROBLEMS:
        return ended(access=access, access_message=message)
    check = rx.parse_check(
        checked.exit_status,
        checked.stdout + checked.stderr,
        subset=subset,
        packs=packs,
        duration=durations["check"],
    )
    base = dataclasses.replace(base, check=check)

    listing = await step("ls", steps.ls(latest.id))
    nodes = {n.path: n for n in rx.parse_ls(listing.stdout)} if listing.ok else {}
    sample = rx.choose_sample(
        list(nodes.values()),
        night=now.date().toordinal(),
        max_bytes=request.policy.sample_max_bytes,
        exclude=request.canary,
    )
    wanted: list[tuple[str, str]] = [(sample.path, "sample")] if sample else []
    restored: list[RestoredFile] = []
    recorded = rx.canary_hash(latest)
    if request.canary:
        if request.canary not in nodes:
            restored.append(
                RestoredFile(request.canary, "canary", problem=RestoreProblem.MISSING,
                             error="not in the snapshot")
            )  # fmt: skip
        elif not recorded:
            restored.append(
                RestoredFile(request.canary, "canary", problem=RestoreProblem.FAILED,
                             error="the snapshot records no canary hash")
            )  # fmt: skip
        else:
            wanted.append((request.canary, "canary"))
    if not wanted:
        return ended(restored=tuple(restored))
    output, ran = await step("restore", steps.restore(latest.id, [p for p, _ in wanted]))
    problem = RestoreProblem.NONE
    if output.exit_status != 0:
        low = (ran.stderr + ran.stdout).lower()
        damaged = any(word in low for word in DAMAGE_WORDS)
        problem = RestoreProblem.DAMAGED if damaged else RestoreProblem.FAILED
    error = rx.fatal_line(ran.stderr or ran.stdout) if problem is not RestoreProblem.NONE else ""
    per_file = round(output.duration / max(1, len(wanted)), 3)
    for index, (path, role) in enumerate(wanted):
        facts = output.files[index] if index < len(output.files) else None
        node = nodes[path]
        if facts is None or not facts.restored_sha256:
            why = problem if problem is not RestoreProblem.NONE else RestoreProblem.FAILED
            restored.append(
                RestoredFile(path, role, node.size, problem=why,
                             error=error or "the file was not restored", duration=per_file)
            )  # fmt: skip
            continue
        expected, source = expected_hash(role, node, facts, recorded)
        restored.append(
            RestoredFile(path, role, facts.restored_size, facts.restored_sha256, expected, source,
                         duration=per_file)
        )  # fmt: skip
    return ended(restored=tuple(restored), scratch_removed=output.scratch_removed)


def expected_hash(
    role: str, node: rx.Node, facts: rx.RestoredFacts, canary: str
) -> tuple[str, str]:
    """What the restored file must hash to, and where that knowledge comes from."""
    if role == "canary":
        return canary, "recorded at backup time in the snapshot's tags"
    unchanged = (
        facts.live_sha256
        and facts.live_size == node.size
        and node.mtime is not None
        and facts.live_mtime == int(node.mtime.timestamp())
    )
    if unchanged:
        return facts.live_sha256, "the live file, unchanged since the snapshot (size and mtime)"
    if facts.dump_sha256:
        return facts.dump_sha256, "a second, independent read of the snapshot (restic dump)"
    return "", "no second source for the hash"


class PosixSteps:
    """restic under ``sh`` over SSH; secrets in the environment (sent on stdin by the connector)."""

    def __init__(self, ctx: Any, restic: rx.Restic, env: dict[str, str], scratch: str) -> None:
        self.ctx, self.restic, self.env, self.scratch = ctx, restic, env, scratch

    async def _run(self, command: str) -> CommandResult:
        return await self.ctx.run(command, env=self.env)

    async def snapshots(self, host: str) -> CommandResult:
        return await self._run(self.restic.snapshots(host))

    async def indexes(self) -> CommandResult:
        return await self._run(self.restic.indexes())

    async def check(self, subset: Subset) -> CommandResult:
        return await self._run(self.restic.check(subset))

    async def ls(self, snapshot_id: str) -> CommandResult:
        return await self._run(self.restic.ls(snapshot_id))

    async def restore(
        self, snapshot_id: str, files: Sequence[str]
    ) -> tuple[rx.RestoreOutput, CommandResult]:
        script = self.restic.restore_script(snapshot_id, files, scratch_base=self.scratch)
        result = await self._run(script)
        return rx.parse_restore(result.stdout, len(files)), result
