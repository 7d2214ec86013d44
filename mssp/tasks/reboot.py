"""The reboot task, and the maintenance-friendly reboot that waits for the host to come back.

A reboot is proven, not assumed: the host's boot identity is read before, the restart is
scheduled so the command itself returns cleanly, and the same connector is re-established
(``close()`` then ``connect()``) until the host answers with a different boot identity or the
deadline passes. Over WinRM the connection drops mid-reboot; those errors are the expected
signal, not a failure. A changed host key or refused credentials after the reboot are never
retried: they stop the wait at once.

Boot identity: on Linux the kernel's boot_id plus the start time of PID 1 (the second part makes
a restarted container or lab host, which shares the kernel, count as rebooted); on Windows the
last boot time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from mssp.errors import CommandError, ConnectError, TaskError
from mssp.tasks import validate
from mssp.tasks.base import Param, Plan, Task, TaskContext, TaskResult, register
from mssp.tasks.parsers.windows import load_json
from mssp.tasks.windows import BOOT_ID, REBOOT, REBOOT_PENDING, run_ps

LINUX_BOOT_ID = (
    "cat /proc/sys/kernel/random/boot_id 2>/dev/null; "
    "cut -d' ' -f22 /proc/1/stat 2>/dev/null || true"
)
# systemd, then SysV/busybox.
LINUX_REBOOT = (
    "if [ -d /run/systemd/system ]; then systemctl reboot; "
    "elif command -v shutdown >/dev/null 2>&1; then shutdown -r now; else reboot; fi"
)
REFUSED = "mssp-reboot-refused"
LINUX_REBOOT_REQUIRED = (
    "if [ -f /var/run/reboot-required ]; then echo yes; "
    "elif command -v needs-restarting >/dev/null 2>&1; then "
    "needs-restarting -r >/dev/null 2>&1; [ $? -eq 1 ] && echo yes || echo no; "
    "else echo unknown; fi"
)
REBOOT_REASON = "mssp: planned maintenance reboot"
POLL_START, POLL_MAX = 1.0, 5.0
RECONNECT_BOUND = 30.0  # one connect attempt (TLS/SSH handshake) may take this long at most


@dataclass(frozen=True)
class RebootOutcome:
    """A reboot that was seen to happen."""

    boot_before: str
    boot_after: str
    seconds: float
    """From issuing the reboot to the host answering again."""
    reconnects: int
    """Connection attempts it took (failed ones included)."""


def is_windows(ctx: TaskContext) -> bool:
    return ctx.conn.transport == "winrm" or ctx.host.transport == "winrm"


def as_root(ctx: TaskContext) -> bool:
    """Whether Linux commands that change the system need sudo (the login is not root)."""
    return ctx.host.username != "root"


async def boot_identity(ctx: TaskContext) -> str:
    if is_windows(ctx):
        result = await ctx.run(BOOT_ID, timeout=60)
    else:
        result = await ctx.run(LINUX_BOOT_ID, timeout=60)
    if result.exit_status != 0 or not result.stdout.strip():
        raise TaskError(f"cannot read the host's boot identity: {result.stderr.strip()[:200]}")
    return " ".join(result.stdout.split())


async def reboot_required(ctx: TaskContext) -> bool | None:
    """True / False, or None when the host cannot tell (no marker file, no needs-restarting)."""
    if is_windows(ctx):
        reply = await run_ps(ctx, REBOOT_PENDING, what="reboot check")
        return bool((load_json(reply, "reboot check") or {}).get("reboot_required"))
    answer = (await ctx.run(LINUX_REBOOT_REQUIRED, timeout=60)).stdout.strip()
    return {"yes": True, "no": False}.get(answer)


async def _issue_reboot(ctx: TaskContext, delay: int) -> str | None:
    """Schedule the reboot; on Linux, the path of the file that will hold its outcome."""
    if is_windows(ctx):
        await run_ps(ctx, REBOOT, {"delay": delay, "reason": REBOOT_REASON}, what="reboot")
        return None
    program = ctx.host.options.get("reboot_command") or LINUX_REBOOT
    if program is not LINUX_REBOOT:
        validate.absolute_path(program)  # an inventory option: a program path, never a line
    # Detached, so this command returns before sshd goes down; what the reboot program says
    # (and a marker if it fails) lands in a private temporary file the wait loop reads.
    command = (
        'f=$(mktemp /tmp/mssp-reboot.XXXXXXXXXX) && echo "$f" && '
        f"nohup sh -c 'sleep {delay}; {program} || echo {REFUSED} $?' "
        '>"$f" 2>&1 </dev/null &'
    )
    try:
        result = await ctx.run(command, become=as_root(ctx), timeout=60, check=True)
    except ConnectError:
        return None  # the host went down before the command could report: that is the point
    status = result.stdout.strip()
    validate.absolute_path(status)
    return status


async def _refused(ctx: TaskContext, status: str | None) -> str | None:
    """The reboot program's own words if it failed (the host then never goes down)."""
    if status is None or is_windows(ctx):
        return None
    result = await ctx.run(f"cat {validate.quote(status)} 2>/dev/null", become=as_root(ctx))
    if REFUSED not in result.stdout:
        return None
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return "; ".join(lines[:3])[:300]


async def reboot_and_wait(ctx: TaskContext, *, timeout: float) -> RebootOutcome:
    """Reboot the host and wait until it answers with a new boot identity (or TaskError)."""
    before = await boot_identity(ctx)
    started = time.monotonic()
    deadline = started + timeout
    if ctx.deadline is not None:
        deadline = min(deadline, ctx.deadline)
    ctx.emit("progress", "rebooting")
    status = await _issue_reboot(ctx, delay=2)
    pause, attempts = POLL_START, 0
    last_error = "the host did not go down"
    while time.monotonic() < deadline:
        await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 1.5, POLL_MAX)
        attempts += 1
        try:
            if not ctx.conn.is_connected:
                with contextlib.suppress(Exception):
                    await ctx.conn.close()
                bound = min(RECONNECT_BOUND, max(0.1, deadline - time.monotonic()))
                await asyncio.wait_for(ctx.conn.connect(), bound)
            after = await boot_identity(ctx)
        except ConnectError as exc:
            if not exc.retryable:  # a new host key or refused credentials: stop, never retry
                raise
            last_error = exc.message
            await _forget(ctx)
            continue
        except (CommandError, TaskError, TimeoutError) as exc:
            last_error = str(exc) or type(exc).__name__
            await _forget(ctx)
            continue
        if after != before:
            await _remove(ctx, status)  # gone with a tmpfs /tmp, but not on every host
            ctx.emit("progress", "back after reboot")
            return RebootOutcome(before, after, round(time.monotonic() - started, 1), attempts)
        refusal = await _refused(ctx, status)
        if refusal:
            await _remove(ctx, status)
            raise TaskError(f"the host refused to reboot: {refusal}")
        last_error = "the host still runs the boot it had before the reboot"
    raise TaskError(
        f"the host did not come back from the reboot within {timeout:g}s ({last_error})"
    )


async def _remove(ctx: TaskContext, status: str | None) -> None:
    if status is not None:
        with contextlib.suppress(Exception):
            await ctx.run(f"rm -f {validate.quote(status)}", become=as_root(ctx), timeout=30)


async def _forget(ctx: TaskContext) -> None:
    """Drop a half-dead connection so the next attempt connects afresh."""
    with contextlib.suppress(Exception):
        await ctx.conn.close()


@register
class RebootTask(Task):
    """Reboot, wait for the host to return (new boot identity) and report how long it took."""

    name = "reboot"
    summary = "Reboot the host and wait until it is back"
    destructive = True
    params = (
        Param("only_if_required", bool, default=False, help="Reboot only when the OS asks for it"),
        Param("timeout", int, default=900, help="Seconds to wait for the host to come back"),
    )

    async def check(self, ctx: TaskContext) -> Plan:
        if self.params["timeout"] <= 0:
            raise TaskError("timeout must be positive")
        required = await reboot_required(ctx)
        if self.params["only_if_required"] and not required:
            return Plan()
        why = "required by the OS" if required else "requested"
        return Plan(
            changes=(f"reboot ({why}); wait up to {self.params['timeout']}s for the host",),
            data={"required": required},
        )

    async def apply(self, ctx: TaskContext, plan: Plan) -> TaskResult:
        outcome = await reboot_and_wait(ctx, timeout=self.params["timeout"])
        return TaskResult.changed(
            f"rebooted; back after {outcome.seconds:g}s",
            data={
                "reboot": {
                    "done": True,
                    "seconds": outcome.seconds,
                    "boot_before": outcome.boot_before,
                    "boot_after": outcome.boot_after,
                    "reconnects": outcome.reconnects,
                }
            },
        )
