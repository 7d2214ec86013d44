"""Task names and parameters are hostile input: fuzzed, they give a task or a ParameterError.

Parameters arrive from the command line, the dashboard, schedules and retries. Every registered
task is built from random parameter sets (its own parameter names, unknown names, and values full
of shell and PowerShell metacharacters, control characters, huge numbers, wrong types); the only
error allowed is ParameterError (exit 2, nothing written: see
tests/engine/test_engine_runs.py::test_invalid_input_writes_nothing). Unknown task names, however
shaped, are a ParameterError too and never import anything outside mssp.tasks.
"""

from __future__ import annotations

import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mssp.errors import ParameterError
from mssp.tasks.base import all_tasks, get_task

TASKS = all_tasks()
HOSTILE_TEXT = st.one_of(
    st.text(max_size=80),
    st.lists(
        st.sampled_from(
            [
                *"$`;|&()<>'\"\\\n\r\t\x00\x1b*?[]{}~#!%@ ",
                "$(id)",
                "`id`",
                "; rm -rf /",
                "&& curl x|sh",
                "$env:PATH",
                "@(1)",
                "..",
                "/etc/shadow",
                "-rf",
                "--help",
                "a",
                "1",
                "web",
                "root",
            ]
        ),
        max_size=20,
    ).map("".join),
)
VALUES = st.one_of(
    HOSTILE_TEXT,
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),
    st.lists(HOSTILE_TEXT, max_size=4),
    st.dictionaries(st.text(max_size=5), HOSTILE_TEXT, max_size=2),
)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_parameters_give_a_task_or_a_parameter_error(name: str) -> None:
    cls = TASKS[name]
    names = [p.name for p in cls.params] or ["cmd"]

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.dictionaries(
            st.one_of(st.sampled_from(names), st.text(max_size=8)), VALUES, max_size=len(names) + 1
        )
    )
    def run(raw: dict[str, object]) -> None:
        try:
            task = cls(raw)
        except ParameterError:
            return
        assert set(task.params) == {p.name for p in cls.params}

    run()


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=40),
        st.sampled_from(["os", "subprocess.run", "base", "__init__", "..", "tests.x", "mssp"]),
    )
)
def test_unknown_task_names_are_a_parameter_error_and_import_nothing_else(name: str) -> None:
    before = set(sys.modules)
    try:
        task = get_task(name)
    except ParameterError:
        task = None
    if task is not None:
        assert task is TASKS[name]
    new = {m for m in set(sys.modules) - before if not m.startswith("mssp.tasks")}
    assert new == set()
