"""The ad-hoc command task behind `mssp exec`: one shell command line on every host."""

from __future__ import annotations

from mssp.errors import ParameterError
from mssp.tasks.base import Param, Plan, Task, TaskContext, TaskResult, register


def _one_line(value: str) -> None:
    if not value.strip():
        raise ParameterError("the command is empty")
    if "\x00" in value:
        raise ParameterError("the command contains a NUL byte")


@register
class CommandTask(Task):
    """Run a command line through the host's shell; ok on exit 0, failed otherwise.

    The command cannot be checked in advance, so ``--check`` reports it skipped. It is reported
    ok rather than changed: the engine cannot know whether an ad-hoc command changed anything.
    """

    name = "command"
    summary = "Run a shell command line"
    destructive = True
    params = (
        Param("cmd", str, help="The command line, run by the host's shell", validate=_one_line),
        Param("become", bool, default=False, help="Run through sudo"),
    )

    async def check(self, ctx: TaskContext) -> Plan:
        return Plan(changes=(f"run: {self.params['cmd']}",), predictable=False)

    async def apply(self, ctx: TaskContext, plan: Plan) -> TaskResult:
        result = await ctx.run(self.params["cmd"], become=self.params["become"])
        if result.exit_status == 0:
            return TaskResult.ok(command=result)
        if result.exit_status is None:
            return TaskResult.failed("killed by a signal", command=result)
        return TaskResult.failed(f"exit status {result.exit_status}", command=result)
