"""The facts task: what a host is and how it is doing, gathered read-only for the inventory.

Each fact is a command plus a pure parser (mssp.tasks.parsers). On Linux the commands run as one
script whose sections the parsers read separately (one round trip per host); on Windows one
PowerShell script answers in JSON. The result goes to ``TaskResult.data["facts"]``; the engine
hands it to ``mssp.store.facts.save_facts`` (tasks never touch the database).

Facts is a report: it changes nothing on the host. Outside ``--check`` its plan has one change,
"record facts" (the inventory is what changes), so the engine calls ``apply``, which returns the
data gathered by ``check``; under ``--check`` nothing would be recorded, so the plan is empty.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from mssp.errors import TaskError
from mssp.tasks.base import Param, Plan, Task, TaskContext, TaskResult, register
from mssp.tasks.parsers import SECTION, split_sections
from mssp.tasks.parsers import linux as p
from mssp.tasks.parsers.windows import parse_facts, parse_wu_search
from mssp.tasks.reboot import is_windows
from mssp.tasks.windows import FACTS, WU_SEARCH, run_ps

FACTS_VERSION = 1
ADMIN_GROUPS = ("sudo", "wheel", "admin")

_SECTIONS = (
    ("os-release", "cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null"),
    ("uname", "uname -srm"),
    ("hostname", "hostname 2>/dev/null || cat /proc/sys/kernel/hostname"),
    ("uptime", "cat /proc/uptime"),
    ("nproc", "nproc 2>/dev/null || getconf _NPROCESSORS_ONLN"),
    ("loadavg", "cat /proc/loadavg"),
    ("meminfo", "cat /proc/meminfo"),
    ("df", "df -P -k 2>/dev/null"),
    (
        "package-manager",
        "for p in apt-get dnf yum zypper apk; do "
        "if command -v $p >/dev/null 2>&1; then echo $p; break; fi; done",
    ),
    (
        "reboot-required",
        "if [ -f /var/run/reboot-required ]; then echo yes; "
        "elif command -v needs-restarting >/dev/null 2>&1; then "
        "needs-restarting -r >/dev/null 2>&1; [ $? -eq 1 ] && echo yes || echo no; "
        "else echo unknown; fi",
    ),
    (
        "init",
        "if [ -d /run/systemd/system ]; then echo systemd; "
        "elif command -v rc-service >/dev/null 2>&1; then echo openrc; else echo sysv; fi",
    ),
    ("passwd", "getent passwd"),
    ("group", "getent group"),
)
LINUX_FACTS = "LC_ALL=C; export LC_ALL\n" + "".join(
    f"echo '{SECTION}{name}'\n{command}\n" for name, command in _SECTIONS
)


def parse_linux_facts(text: str) -> dict[str, Any]:
    """The facts of a Linux host from LINUX_FACTS' output (pure; tested from captures)."""
    s = split_sections(text)
    if "os-release" not in s:
        raise TaskError("the facts script printed nothing usable (is this a POSIX shell?)")
    release = p.parse_os_release(s["os-release"])
    uname = p.parse_uname(s.get("uname", ""))
    memory = p.parse_meminfo(s.get("meminfo", ""))
    cpu = p.parse_cpu(s.get("nproc", "0"), s.get("loadavg", "0 0 0"))
    groups = p.parse_group(s.get("group", ""))
    admins = {m for g in groups if g.name in ADMIN_GROUPS for m in g.members}
    admins |= {"root"}
    manager = s.get("package-manager", "").strip()
    return {
        "os": {
            "family": p.os_family(release),
            "id": release.id,
            "name": release.name,
            "version": release.version_id,
            "pretty_name": release.pretty_name,
            "codename": release.version_codename,
        },
        "hostname": s.get("hostname", "").strip(),
        "kernel": {"name": uname.kernel, "release": uname.release, "machine": uname.machine},
        "uptime_seconds": p.parse_uptime(s.get("uptime", "0")),
        "cpu": {
            "count": cpu.count,
            "load1": cpu.load1,
            "load5": cpu.load5,
            "load15": cpu.load15,
        },
        "memory": {**asdict(memory), "used_percent": memory.used_percent},
        "disks": [asdict(fs) for fs in p.parse_df(s.get("df", ""))],
        "package_manager": {"apt-get": "apt"}.get(manager, manager) or "none",
        "init": s.get("init", "").strip() or "unknown",
        "reboot_required": {"yes": True, "no": False}.get(s.get("reboot-required", "").strip()),
        "users": [
            {
                "name": u.name,
                "uid": u.uid,
                "home": u.home,
                "shell": u.shell,
                "admin": u.name in admins,
            }
            for u in p.parse_passwd(s.get("passwd", ""))
            if u.is_login
        ],
    }


def updates_summary(pending: list[dict[str, Any]]) -> dict[str, Any]:
    """The pending-updates fact: counts, and names with security ones apart."""
    security = [u["name"] for u in pending if u.get("security")]
    return {
        "pending": len(pending),
        "security": len(security),
        "packages": sorted(u["name"] for u in pending),
        "security_packages": sorted(security),
    }


async def gather(ctx: TaskContext, *, with_updates: bool = True) -> dict[str, Any]:
    """All facts of the host (read-only)."""
    if is_windows(ctx):
        facts = parse_facts(await run_ps(ctx, FACTS, what="facts"))
        if with_updates:
            search = parse_wu_search(
                await run_ps(ctx, WU_SEARCH, {"security_only": False}, what="Windows Update")
            )
            facts["updates"] = updates_summary(
                [{"name": u.label, "security": u.security} for u in search.updates]
            )
            facts["reboot_required"] = facts["reboot_required"] or search.reboot_required
    else:
        result = await ctx.run(LINUX_FACTS, timeout=120)
        if not result.stdout.strip():
            raise TaskError(f"the facts script failed: {result.stderr.strip()[:200]}")
        facts = parse_linux_facts(result.stdout)
        if with_updates and facts["package_manager"] != "none":
            from mssp.tasks.updates import linux_pending

            pending = await linux_pending(ctx, facts["package_manager"])
            facts["updates"] = updates_summary([asdict(u) for u in pending])
    facts["facts_version"] = FACTS_VERSION
    facts["transport"] = ctx.conn.transport
    facts["collected_at"] = time.time()
    return facts


def describe(facts: dict[str, Any]) -> str:
    """One line for the run view: 'Debian GNU/Linux 12 (bookworm), 3 updates (1 security)'."""
    parts = [facts["os"]["pretty_name"]]
    updates = facts.get("updates")
    if updates:
        parts.append(f"{updates['pending']} updates ({updates['security']} security)")
    if facts.get("reboot_required"):
        parts.append("reboot required")
    return ", ".join(parts)


@register
class FactsTask(Task):
    """Gather OS, kernel, uptime, CPU, memory, disks, package manager, updates, reboot, users."""

    name = "facts"
    summary = "Gather the host's facts (OS, resources, pending updates, users) for the inventory"
    params = (Param("updates", bool, default=True, help="Also count pending updates (slower)"),)

    async def check(self, ctx: TaskContext) -> Plan:
        if ctx.check_mode:
            return Plan()  # nothing would be recorded, and the host never changes
        facts = await gather(ctx, with_updates=self.params["updates"])
        return Plan(changes=(f"record facts: {describe(facts)}",), data={"facts": facts})

    async def apply(self, ctx: TaskContext, plan: Plan) -> TaskResult:
        facts = plan.data["facts"]
        return TaskResult.ok(describe(facts), data={"facts": facts})
