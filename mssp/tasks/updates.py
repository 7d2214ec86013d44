"""OS updates: updates.check reports what is pending, updates.apply installs it (and reboots).

Linux: apt, dnf (and yum), zypper and apk, read with their own tools (``apt-get -s``,
``dnf check-update`` + ``updateinfo``, ``zypper list-updates``, ``apk list -u``); apply installs
exactly the planned package names (``apt-get install --only-upgrade``, ``dnf upgrade`` ...), so
"security only" and exclusions are decided here, from parsed data, never by a shell pattern.
Windows: the Windows Update Agent COM API (mssp/tasks/windows/wu_*.ps1).

Reboot policy: never | if-required | always; a reboot is waited for (mssp.tasks.reboot) and
reported as done, or as pending when the policy forbids it.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict
from typing import Any

from mssp.errors import TaskError
from mssp.tasks import validate
from mssp.tasks.base import Param, Plan, Task, TaskContext, TaskResult, register
from mssp.tasks.parsers import packages as pk
from mssp.tasks.reboot import as_root, is_windows, reboot_and_wait, reboot_required

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
# Simulation only, without the lock, without rewriting apt's binary caches and without the
# planner's log (/var/log/apt/eipp.log.xz): a check writes nothing at all on the host.
APT_SIMULATE = (
    "LC_ALL=C apt-get -s -o Debug::NoLocking=1 -o Dir::Cache::pkgcache= "
    "-o Dir::Cache::srcpkgcache= -o Dir::Log::Planner=/dev/null dist-upgrade"
)
APT_INSTALL = (
    "DEBIAN_FRONTEND=noninteractive LC_ALL=C apt-get install -y -q --only-upgrade "
    "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "
)
REFRESH = {
    "apt": "LC_ALL=C apt-get update -q",
    "dnf": "dnf -q -y makecache",
    "yum": "yum -q -y makecache",
    "zypper": "zypper --non-interactive --quiet refresh",
    "apk": "apk update -q",
}
INSTALL = {
    "apt": APT_INSTALL,
    "dnf": "dnf -y -q upgrade ",
    "yum": "yum -y -q update ",
    "zypper": "zypper --non-interactive --quiet update ",
    "apk": "apk upgrade -q ",
}
RPM_VERSIONS = "rpm -q --qf '%{NAME} %{EPOCH}:%{VERSION}-%{RELEASE}\\n' "
DPKG_VERSIONS = "dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\\n' "
REBOOT_POLICIES = ("never", "if-required", "always")


async def detect_manager(ctx: TaskContext) -> str:
    result = await ctx.run(
        "for p in apt-get dnf yum zypper apk; do "
        "if command -v $p >/dev/null 2>&1; then echo $p; exit 0; fi; done; echo none",
        timeout=60,
    )
    manager = result.stdout.strip()
    return {"apt-get": "apt"}.get(manager, manager)


async def _out(ctx: TaskContext, command: str, ok: tuple[int, ...] = (0,)) -> str:
    result = await ctx.run(command, timeout=600)
    if result.exit_status not in ok:
        first = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or [""]
        raise TaskError(f"`{command.split()[0]}` failed (exit {result.exit_status}): {first[0]}")
    return result.stdout


async def linux_pending(ctx: TaskContext, manager: str) -> list[pk.PackageUpdate]:
    """Pending updates from the host's current package lists (read-only: no refresh, no lock)."""
    if manager == "apt":
        return pk.parse_apt_simulate(await _out(ctx, APT_SIMULATE))
    if manager in ("dnf", "yum"):
        listed = pk.parse_dnf_check_update(
            await _out(ctx, f"LC_ALL=C {manager} -q check-update", ok=(0, 100))
        )
        if not listed:
            return []
        security = pk.parse_dnf_updateinfo(
            await _out(ctx, f"LC_ALL=C {manager} -q updateinfo list --security --updates")
        )
        installed = await installed_versions(ctx, manager, [u.name for u in listed])
        return [
            pk.PackageUpdate(u.name, installed.get(u.name, ""), u.available, u.arch, u.source,
                             u.name in security)
            for u in listed
        ]  # fmt: skip
    if manager == "zypper":
        listed = pk.parse_zypper_list_updates(
            await _out(ctx, "LC_ALL=C zypper --non-interactive --quiet list-updates")
        )
        return listed
    if manager == "apk":
        return pk.parse_apk_upgradable(await _out(ctx, "apk list --upgradable 2>/dev/null"))
    raise TaskError(f"no supported package manager on this host (found: {manager or 'none'})")


async def installed_versions(ctx: TaskContext, manager: str, names: list[str]) -> dict[str, str]:
    if not names:
        return {}
    for name in names:
        validate.package(name)  # names came from the host: re-check before a command line
    words = validate.quote_all(names)
    if manager == "apt":
        return pk.parse_dpkg_versions(await _out(ctx, DPKG_VERSIONS + words, ok=(0, 1)))
    if manager in ("dnf", "yum", "zypper"):
        return pk.parse_rpm_versions(await _out(ctx, RPM_VERSIONS + words, ok=(0, 1)))
    if manager == "apk":
        found = pk.parse_apk_versions(await _out(ctx, "apk info -v 2>/dev/null"))
        return {n: v for n, v in found.items() if n in names}
    return {}


NO_SECURITY_DATA = ("zypper", "apk")


def require_security_data(manager: str, security_only: bool) -> None:
    """Refuse "security only" where the package manager cannot say which updates are security.

    Selecting nothing instead would report a vulnerable host as up to date.
    """
    if security_only and manager in NO_SECURITY_DATA:
        raise TaskError(f"{manager} does not classify security updates here: run without "
                        "security_only, or exclude what must not change")  # fmt: skip


def select(
    pending: list[pk.PackageUpdate], *, security_only: bool, exclude: list[str]
) -> tuple[list[pk.PackageUpdate], list[pk.PackageUpdate]]:
    """(selected, left out) by the options; exclusions are globs on package names."""
    chosen, skipped = [], []
    for update in pending:
        excluded = any(fnmatch.fnmatchcase(update.name, pattern) for pattern in exclude)
        if excluded or (security_only and not update.security):
            skipped.append(update)
        else:
            chosen.append(update)
    return chosen, skipped


def _update_params(*, refresh_default: bool) -> tuple[Param, ...]:
    return (
        Param("security_only", bool, default=False, help="Only updates that fix security issues"),
        Param(
            "exclude",
            list,
            default=[],
            help="Package names or globs (Windows: KB numbers or title globs) to leave alone",
            validate=validate.each(validate.package_pattern),
        ),
        Param("refresh", bool, default=refresh_default, help="Refresh package lists first"),
    )


@register
class UpdatesCheckTask(Task):
    """Report pending updates (security ones apart) and whether a reboot is pending."""

    name = "updates.check"
    summary = "List pending OS updates (security apart) without installing anything"
    params = _update_params(refresh_default=False)

    async def check(self, ctx: TaskContext) -> Plan:
        if self.params["refresh"]:  # refreshing lists writes the package cache: a change
            return Plan(changes=("refresh package lists, then report pending updates",))
        if ctx.check_mode:
            return Plan()
        report = await self._report(ctx)
        return Plan(changes=(f"report: {report['summary']}",), data=report)

    async def apply(self, ctx: TaskContext, plan: Plan) -> TaskResult:
        report = dict(plan.data)
        if self.params["refresh"]:
            if not is_windows(ctx):
                manager = await detect_manager(ctx)
                if manager in REFRESH:
                    await ctx.run(REFRESH[manager], become=as_root(ctx), check=True, timeout=600)
            report = await self._report(ctx)
        return TaskResult.ok(report["summary"], data=report)

    async def _report(self, ctx: TaskContext) -> dict[str, Any]:
        if is_windows(ctx):
            from mssp.tasks.windows.wu import windows_pending

            search = await windows_pending(ctx, security_only=self.params["security_only"])
            items = [_wu_item(u) for u in search.updates]
            required: bool | None = search.reboot_required
            manager = "windows-update"
        else:
            manager = await detect_manager(ctx)
            require_security_data(manager, self.params["security_only"])
            items = [asdict(u) for u in await linux_pending(ctx, manager)]
            required = await reboot_required(ctx)
        exclude = self.params["exclude"]
        items = [
            i
            for i in items
            if not any(fnmatch.fnmatchcase(k, pat) for pat in exclude for k in _keys(i))
            and (i["security"] or not self.params["security_only"])
        ]
        security = sum(1 for i in items if i["security"])
        return {
            "summary": f"{len(items)} updates pending ({security} security)"
            + (", reboot required" if required else ""),
            "package_manager": manager,
            "pending": items,
            "security": security,
            "reboot_required": required,
        }


def _wu_item(update: Any) -> dict[str, Any]:
    return {
        "name": update.label,
        "id": update.id,
        "title": update.title,
        "kb": list(update.kb),
        "severity": update.severity,
        "security": update.security,
    }


def _keys(item: dict[str, Any]) -> list[str]:
    """What an exclusion pattern is matched against: the name, and for Windows KBs and title."""
    return [item["name"], *(f"KB{k}" for k in item.get("kb", ())), *item.get("kb", ()),
            item.get("title", "")]  # fmt: skip


@register
class UpdatesApplyTask(Task):
    """Install pending updates by the options, then reboot by the policy and wait for the host."""

    name = "updates.apply"
    summary = "Install pending OS updates (apt, dnf, zypper, apk, Windows Update), reboot by policy"
    destructive = True
    params = (
        *_update_params(refresh_default=True),
        Param("reboot", str, default="never", choices=REBOOT_POLICIES, help="Reboot policy"),
        Param("reboot_timeout", int, default=900, help="Seconds to wait for the host to return"),
    )

    async def check(self, ctx: TaskContext) -> Plan:
        if is_windows(ctx):
            from mssp.tasks.windows.wu import plan_windows

            return await plan_windows(ctx, self.params)
        manager = await detect_manager(ctx)
        require_security_data(manager, self.params["security_only"])
        pending = await linux_pending(ctx, manager)
        chosen, skipped = select(
            pending, security_only=self.params["security_only"], exclude=self.params["exclude"]
        )
        required = await reboot_required(ctx)
        changes = []
        if self.params["refresh"]:
            changes.append("refresh package lists (the selection below may grow)")
        if chosen:
            names = ", ".join(f"{u.name} {u.current or '-'} → {u.available}" for u in chosen)
            changes.append(f"upgrade {len(chosen)} packages: {names}")
        policy = self.params["reboot"]
        if policy == "always" or (policy == "if-required" and required):
            changes.append("reboot and wait for the host")
        if not chosen and not (policy == "always" or (policy == "if-required" and required)):
            return Plan(data={"skipped": [u.name for u in skipped]})
        return Plan(
            changes=tuple(changes),
            data={
                "manager": manager,
                "chosen": [asdict(u) for u in chosen],
                "skipped": [u.name for u in skipped],
                "reboot_required": required,
            },
        )

    async def apply(self, ctx: TaskContext, plan: Plan) -> TaskResult:
        if is_windows(ctx):
            from mssp.tasks.windows.wu import apply_windows

            return await apply_windows(ctx, self.params, plan)
        manager = plan.data["manager"]
        chosen = [pk.PackageUpdate(**u) for u in plan.data["chosen"]]
        if self.params["refresh"] and manager in REFRESH:
            ctx.emit("progress", "refreshing package lists")
            await ctx.run(REFRESH[manager], become=as_root(ctx), check=True, timeout=900)
            chosen, _ = select(
                await linux_pending(ctx, manager),
                security_only=self.params["security_only"],
                exclude=self.params["exclude"],
            )
        names = [u.name for u in chosen]
        before = {u.name: u.current for u in chosen}
        output = None
        if names:
            for name in names:
                validate.package(name)
            ctx.emit("progress", f"installing {len(names)} packages")
            output = await ctx.run(
                INSTALL[manager] + validate.quote_all(names),
                become=as_root(ctx),
                check=True,
                timeout=3600,
            )
        after = await installed_versions(ctx, manager, names)
        still = [u.name for u in await linux_pending(ctx, manager) if u.name in before]
        required = await reboot_required(ctx)
        reboot = await _reboot_by_policy(ctx, self.params, required, installed=bool(names))
        data = {
            "package_manager": manager,
            "before": before,
            "after": after,
            "still_pending": still,
            "skipped": plan.data.get("skipped", []),
            "reboot": reboot,
        }
        if still:
            return TaskResult.failed(
                f"still pending after the upgrade: {', '.join(still)}", command=output, data=data
            )
        message = f"upgraded {len(names)} packages" + _reboot_words(reboot)
        if not names and not reboot["done"]:
            return TaskResult.ok("nothing to upgrade after refreshing", data=data)
        return TaskResult.changed(message, command=output, data=data)


async def _reboot_by_policy(
    ctx: TaskContext, params: dict[str, Any], required: bool | None, *, installed: bool
) -> dict[str, Any]:
    """Reboot when the policy says so; what happened, for the result."""
    policy = params["reboot"]
    wanted = policy == "always" or (policy == "if-required" and bool(required))
    if not wanted:
        return {"policy": policy, "required": required, "done": False, "pending": bool(required)}
    outcome = await reboot_and_wait(ctx, timeout=params["reboot_timeout"])
    return {
        "policy": policy,
        "required": required,
        "done": True,
        "pending": False,
        "seconds": outcome.seconds,
        "reconnects": outcome.reconnects,
    }


def _reboot_words(reboot: dict[str, Any]) -> str:
    if reboot["done"]:
        return f"; rebooted (back after {reboot['seconds']:g}s)"
    if reboot["pending"]:
        return "; reboot pending"
    return ""
