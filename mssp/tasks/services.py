"""service.status and service.restart: systemd, SysV/OpenRC init scripts, Windows services.

Hosts without systemd (containers, the lab's hosts) are handled explicitly: an LSB init script
(``service NAME ...`` or ``/etc/init.d/NAME``) or OpenRC's ``rc-service``; a host with none of them
gets a clear "no service manager" failure, never a silent ok.
"""

from __future__ import annotations

from dataclasses import asdict

from mssp.errors import TaskError
from mssp.tasks import validate
from mssp.tasks.base import Param, Plan, Task, TaskContext, TaskResult, register
from mssp.tasks.parsers.services import ServiceStatus, parse_init_status, parse_systemctl_show
from mssp.tasks.parsers.windows import parse_service
from mssp.tasks.reboot import as_root, is_windows
from mssp.tasks.windows import SERVICE_RESTART, SERVICE_STATUS, run_ps

DETECT = (
    "if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then echo systemd; "
    "elif command -v rc-service >/dev/null 2>&1; then echo openrc; "
    "elif [ -d /etc/init.d ]; then echo sysv; else echo none; fi"
)
SHOW = "systemctl show -p LoadState -p ActiveState -p SubState -p UnitFileState -p MainPID -- "


async def service_manager(ctx: TaskContext) -> str:
    if is_windows(ctx):
        return "windows"
    return (await ctx.run(DETECT, timeout=30)).stdout.strip() or "none"


async def status(ctx: TaskContext, name: str, manager: str) -> ServiceStatus:
    if manager == "windows":
        svc = parse_service(await run_ps(ctx, SERVICE_STATUS, {"name": name}, what="service"))
        return ServiceStatus(
            name, "windows", svc.exists, svc.status == "Running", svc.status, svc.start_type
        )
    q = validate.quote(name)
    if manager == "systemd":
        return parse_systemctl_show(name, (await ctx.run(SHOW + q, timeout=60)).stdout)
    if manager == "openrc":
        present = (await ctx.run(f"test -x /etc/init.d/{q}", timeout=30)).ok
        result = await ctx.run(f"rc-service {q} status", become=as_root(ctx), timeout=60)
        return parse_init_status(name, "openrc", result.exit_status, present)
    if manager == "sysv":
        present = (await ctx.run(f"test -x /etc/init.d/{q}", timeout=30)).ok
        result = await ctx.run(f"/etc/init.d/{q} status", become=as_root(ctx), timeout=60)
        return parse_init_status(name, "sysv", result.exit_status if present else 4, present)
    raise TaskError("no service manager on this host (no systemd, OpenRC or /etc/init.d)")


def _param() -> Param:
    return Param("name", str, help="Service (unit) name", validate=validate.service)


@register
class ServiceStatusTask(Task):
    """Report whether a service exists and runs."""

    name = "service.status"
    summary = "Show a service's state (systemd, init scripts, Windows services)"
    params = (_param(),)

    async def check(self, ctx: TaskContext) -> Plan:
        if ctx.check_mode:
            return Plan()
        found = await status(ctx, self.params["name"], await service_manager(ctx))
        return Plan(changes=(f"report: {found.state}",), data={"service": asdict(found)})

    async def apply(self, ctx: TaskContext, plan: Plan) -> TaskResult:
        found = ServiceStatus(**plan.data["service"])
        if not found.exists:
            return TaskResult.failed(f"no service {found.name!r} ({found.manager})", data=plan.data)
        return TaskResult.ok(f"{found.name}: {found.state} ({found.manager})", data=plan.data)


@register
class ServiceRestartTask(Task):
    """Restart a service and confirm it runs afterwards."""

    name = "service.restart"
    summary = "Restart a service and check that it runs again"
    destructive = True
    params = (_param(),)

    async def check(self, ctx: TaskContext) -> Plan:
        manager = await service_manager(ctx)
        found = await status(ctx, self.params["name"], manager)
        if not found.exists:
            raise TaskError(f"no service {found.name!r} on this host ({manager})")
        return Plan(
            changes=(f"restart {found.name} (now {found.state})",),
            data={"manager": manager, "before": asdict(found)},
        )

    async def apply(self, ctx: TaskContext, plan: Plan) -> TaskResult:
        name, manager = self.params["name"], plan.data["manager"]
        q = validate.quote(name)
        if manager == "windows":
            await run_ps(ctx, SERVICE_RESTART, {"name": name}, what="service restart")
            return TaskResult.changed(f"restarted {name}")
        command = {
            "systemd": f"systemctl restart -- {q}",
            "openrc": f"rc-service {q} restart",
            "sysv": f"/etc/init.d/{q} restart",
        }[manager]
        result = await ctx.run(command, become=as_root(ctx), timeout=300)
        if not result.ok:
            return TaskResult.failed(f"restart failed (exit {result.exit_status})", command=result)
        return TaskResult.changed(f"restarted {name}", command=result)

    async def verify(self, ctx: TaskContext, plan: Plan, result: TaskResult) -> TaskResult:
        if result.status != "changed":
            return result
        after = await status(ctx, self.params["name"], plan.data["manager"])
        data = {"before": plan.data["before"], "after": asdict(after)}
        if not after.active:
            return TaskResult.failed(f"{after.name} is {after.state} after the restart", data=data)
        return TaskResult.changed(f"restarted {after.name}: {after.state}", data=data)
