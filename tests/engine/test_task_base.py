"""The Task contract: parameter validation, results, the registry, and the command task (pure)."""

from __future__ import annotations

import pytest

from mssp.errors import ParameterError, TaskError
from mssp.tasks import all_tasks, get_task
from mssp.tasks.base import Param, Plan, Task, TaskContext, TaskResult, register
from mssp.tasks.command import CommandTask


def _no_semicolon(value: str) -> None:
    if ";" in value:
        raise ParameterError("no ';' allowed")


class ExampleTask(Task):
    name = "test.example"
    params = (
        Param("user", str, validate=_no_semicolon),
        Param("count", int, default=1),
        Param("force", bool, default=False),
        Param("groups", list, default=[]),
        Param("mode", str, default="fast", choices=("fast", "slow")),
    )

    async def check(self, ctx: TaskContext) -> Plan:
        return Plan()

    async def apply(self, ctx: TaskContext, plan: Plan) -> TaskResult:
        return TaskResult.ok()


def test_params_from_cli_text_are_converted() -> None:
    task = ExampleTask({"user": "bob", "count": "3", "force": "yes", "groups": "a, b"})
    assert task.params == {
        "user": "bob",
        "count": 3,
        "force": True,
        "groups": ["a", "b"],
        "mode": "fast",
    }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "needs parameter 'user'"),
        ({"user": "x", "colour": "red"}, "has no parameter 'colour'"),
        ({"user": "x", "count": "many"}, "must be int"),
        ({"user": "x", "count": 1.5}, "must be int"),
        ({"user": "x", "force": "maybe"}, "must be bool"),
        ({"user": "x", "mode": "medium"}, "must be one of fast, slow"),
        ({"user": "x; rm -rf /"}, "no ';' allowed"),
        ({"user": 5}, "must be str"),
    ],
)
def test_bad_params_are_refused(raw: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        ExampleTask(raw)


def test_plan_needed() -> None:
    assert not Plan().needed
    assert Plan(changes=("x",)).needed
    assert Plan(predictable=False).needed


def test_task_result_status_is_checked() -> None:
    with pytest.raises(TaskError):
        TaskResult("great")
    assert TaskResult.failed("boom").status == "failed"


def test_registry() -> None:
    assert get_task("command") is CommandTask
    assert "command" in all_tasks()
    with pytest.raises(ParameterError, match=r"unknown task 'nope\.task'"):
        get_task("nope.task")
    with pytest.raises(TypeError):

        @register
        class Clash(ExampleTask):
            name = "command"


@pytest.mark.parametrize("cmd", ["", "   ", "echo\x00hi"])
def test_command_task_refuses_empty_or_nul(cmd: str) -> None:
    with pytest.raises(ParameterError):
        CommandTask({"cmd": cmd})
