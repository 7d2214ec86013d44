"""Maintenance tasks the engine runs on hosts; see mssp.tasks.base for the contract."""

from __future__ import annotations

import importlib
import pkgutil

from mssp.tasks.base import (
    Param,
    Plan,
    Task,
    TaskContext,
    TaskResult,
    all_tasks,
    get_task,
    register,
)

__all__ = [
    "Param",
    "Plan",
    "Task",
    "TaskContext",
    "TaskResult",
    "all_tasks",
    "get_task",
    "load_builtin_tasks",
    "register",
]

_loaded = False


def load_builtin_tasks() -> None:
    """Import every module of this package once, so each registers its tasks."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
