"""Windows Update for updates.check / updates.apply through the Windows Update Agent COM API.

Search → select (security only, exclusions by KB number or title glob) → download and install
exactly the selected update ids → reboot by policy, riding out the dropped WinRM connection →
search again: the result lists the KBs before and after and whether a reboot is done or pending.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from mssp.errors import TaskError
from mssp.tasks.base import Plan, TaskContext, TaskResult
from mssp.tasks.parsers.windows import (
    UpdateSearch,
    WindowsUpdate,
    parse_hotfixes,
    parse_wu_install,
    parse_wu_search,
)
from mssp.tasks.windows import HOTFIXES, WU_INSTALL, WU_SEARCH, run_ps


async def windows_pending(ctx: TaskContext, *, security_only: bool) -> UpdateSearch:
    reply = await run_ps(ctx, WU_SEARCH, {"security_only": security_only}, what="Windows Update")
    return parse_wu_search(reply)


def excluded(update: WindowsUpdate, patterns: list[str]) -> bool:
    keys = [update.title, *update.kb, *(f"KB{k}" for k in update.kb)]
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns for key in keys)


def select_windows(
    search: UpdateSearch, *, security_only: bool, exclude: list[str]
) -> tuple[list[WindowsUpdate], list[WindowsUpdate]]:
    chosen, skipped = [], []
    for update in search.updates:
        if excluded(update, exclude) or (security_only and not update.security):
            skipped.append(update)
        else:
            chosen.append(update)
    return chosen, skipped


async def plan_windows(ctx: TaskContext, params: dict[str, Any]) -> Plan:
    search = await windows_pending(ctx, security_only=params["security_only"])
    chosen, skipped = select_windows(
        search, security_only=params["security_only"], exclude=params["exclude"]
    )
    policy = params["reboot"]
    reboot = policy == "always" or (policy == "if-required" and search.reboot_required)
    changes = []
    if chosen:
        changes.append(f"install {len(chosen)} updates: " + "; ".join(u.label for u in chosen))
    if reboot or (policy == "if-required" and any(u.reboot_behavior for u in chosen)):
        changes.append("reboot if Windows asks for it, and wait for the host")
    if not chosen and not reboot:
        return Plan(data={"skipped": [u.label for u in skipped]})
    return Plan(
        changes=tuple(changes),
        data={
            "chosen": [u.id for u in chosen],
            "labels": {u.id: u.label for u in chosen},
            "skipped": [u.label for u in skipped],
            "reboot_required": search.reboot_required,
        },
    )


async def apply_windows(ctx: TaskContext, params: dict[str, Any], plan: Plan) -> TaskResult:
    from mssp.tasks.updates import _reboot_by_policy, _reboot_words

    ids = list(plan.data["chosen"])
    before_fixes = parse_hotfixes(await run_ps(ctx, HOTFIXES, what="hot-fix listing"))
    installed_ok: list[str] = []
    failed: list[str] = []
    required = bool(plan.data.get("reboot_required"))
    if ids:
        ctx.emit("progress", f"downloading and installing {len(ids)} updates")
        outcome = parse_wu_install(
            await run_ps(ctx, WU_INSTALL, {"update_ids": ids}, what="Windows Update install")
        )
        if not outcome.updates:
            raise TaskError("Windows Update installed nothing (the updates are no longer offered)")
        installed_ok = [_label(u.kb, u.title) for u in outcome.updates if u.succeeded]
        failed = [
            f"{_label(u.kb, u.title)}: {u.result} (0x{u.hresult & 0xFFFFFFFF:08X})"
            for u in outcome.updates
            if not u.succeeded
        ]
        required = required or outcome.reboot_required
    reboot = await _reboot_by_policy(ctx, params, required, installed=bool(ids))
    after_search = await windows_pending(ctx, security_only=False)
    still = [u.label for u in after_search.updates if u.id in ids]
    after_fixes = parse_hotfixes(await run_ps(ctx, HOTFIXES, what="hot-fix listing"))
    if reboot["done"]:
        reboot["pending"] = after_search.reboot_required
    data = {
        "package_manager": "windows-update",
        "before": sorted(plan.data["labels"].values()),
        "installed": installed_ok,
        "failed": failed,
        "hotfixes_before": sorted(before_fixes),
        "hotfixes_after": sorted(after_fixes),
        "new_hotfixes": sorted(set(after_fixes) - set(before_fixes)),
        "still_pending": still,
        "skipped": plan.data.get("skipped", []),
        "reboot": reboot,
    }
    if failed or still:
        problems = failed or [f"still offered: {', '.join(still)}"]
        return TaskResult.failed("; ".join(problems), data=data)
    message = f"installed {len(installed_ok)} updates" + _reboot_words(reboot)
    return TaskResult.changed(message, data=data)


def _label(kb: tuple[str, ...], title: str) -> str:
    return ", ".join(f"KB{k}" for k in kb) or title
