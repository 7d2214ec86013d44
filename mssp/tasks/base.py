"""The Task contract: parameters, check (read-only plan) → apply → verify, and the registry.

A task is one kind of work the engine runs on each host of a selection (``command``,
``updates.apply``, ``accounts.ensure``...). Writing one:

```python
@register
class RebootTask(Task):
    name = "host.reboot"
    summary = "Reboot the host when it asks for it"
    destructive = True
    params = (Param("force", bool, default=False, help="Reboot even if not required"),)

    async def check(self, ctx: TaskContext) -> Plan:
        needed = self.params["force"] or (await ctx.run("test -f /run/reboot-required")).ok
        return Plan(changes=("reboot",) if needed else ())

    async def apply(self, ctx: TaskContext, plan: Plan) -> TaskResult:
        result = await ctx.run("systemctl reboot", check=True)
        return TaskResult.changed("rebooted", command=result)
```

Rules the engine relies on:
- ``check`` only reads. The engine calls it first; with ``--check`` it stops there and reports the
  plan (``changed`` if the plan has changes, ``ok`` if not, ``skipped`` if the task cannot predict
  its effect: ``Plan(predictable=False)``).
- ``apply`` is called only when the plan has changes; ``verify`` after it (the default returns the
  apply result unchanged). A task that finds nothing to do returns ``Plan()`` and is reported ok.
- A task sees only its ``TaskContext``: the host (a ``HostRecord``), the connection (the
  ``Connector`` interface), the secrets it declared in ``secrets``, and ``emit``. It never touches
  the database or a concrete connector.
- Raise ``TaskError`` for a failure you understand, ``ParameterError`` for bad parameters;
  ``CommandError``/``CommandTimeout``/``ConnectError`` from the connector may propagate: the engine
  maps them to failed / timeout / unreachable. Never put a secret in a command line or a message:
  pass it through ``stdin`` or ``env``.
"""

from __future__ import annotations

import abc
import importlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mssp.connectors.base import CommandResult, Connector
from mssp.errors import CommandTimeout, ParameterError, TaskError
from mssp.inventory import HostRecord

_MISSING: Any = object()


@dataclass(frozen=True)
class Param:
    """One task parameter: its type, default and constraints."""

    name: str
    type: type = str
    """str, int, float, bool or list (a list of strings)."""
    default: Any = _MISSING
    """No default means required."""
    help: str = ""
    choices: tuple[Any, ...] = ()
    validate: Callable[[Any], None] | None = None
    """Raises ParameterError for a value that has the right type but is not acceptable."""

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    def coerce(self, raw: Any) -> Any:
        """Convert a value from the CLI (text) or JSON to this parameter's type."""
        try:
            value = _coerce(self.type, raw)
        except (TypeError, ValueError):
            raise ParameterError(
                f"parameter {self.name!r} must be {self.type.__name__}, not {raw!r}"
            ) from None
        if self.choices and value not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise ParameterError(f"parameter {self.name!r} must be one of {allowed}")
        if self.validate is not None:
            self.validate(value)
        return value


def _coerce(kind: type, raw: Any) -> Any:
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(raw)
    if kind is int:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError(raw)
        return int(raw)
    if kind is float:
        if isinstance(raw, bool):
            raise ValueError(raw)
        return float(raw)
    if kind is list:
        if isinstance(raw, str):
            return [part.strip() for part in raw.split(",") if part.strip()]
        if isinstance(raw, (list, tuple)) and all(isinstance(x, str) for x in raw):
            return list(raw)
        raise ValueError(raw)
    if kind is str:
        if not isinstance(raw, str):
            raise TypeError(raw)
        return raw
    raise TypeError(kind)


@dataclass(frozen=True)
class Plan:
    """What ``check`` found: the changes ``apply`` would make (human-readable), and its data."""

    changes: tuple[str, ...] = ()
    """One line per change; empty means the host is already as wanted."""
    data: Mapping[str, Any] = field(default_factory=dict)
    """Whatever ``apply`` needs from the check (package lists, current values...)."""
    predictable: bool = True
    """False when the task cannot know its effect without doing it (an ad-hoc command)."""

    @property
    def needed(self) -> bool:
        return bool(self.changes) or not self.predictable


@dataclass(frozen=True)
class TaskResult:
    """What happened on one host. The engine turns ``status`` into the host's state."""

    status: str
    """"ok", "changed", "failed" or "skipped"."""
    message: str = ""
    exit_status: int | None = None
    stdout: str = ""
    """Raw output; the engine neutralises and caps it before storing or showing it."""
    stderr: str = ""
    truncated: bool = False
    """The connector already dropped output beyond its cap."""
    data: Mapping[str, Any] = field(default_factory=dict)
    """Structured result stored in HostRun.result (JSON-serialisable)."""

    STATUSES: ClassVar[frozenset[str]] = frozenset({"ok", "changed", "failed", "skipped"})

    def __post_init__(self) -> None:
        if self.status not in self.STATUSES:
            raise TaskError(f"invalid task result status {self.status!r}")

    @classmethod
    def _make(cls, status: str, message: str, command: CommandResult | None, **kw: Any):
        if command is not None:
            kw.setdefault("exit_status", command.exit_status)
            kw.setdefault("stdout", command.stdout)
            kw.setdefault("stderr", command.stderr)
            kw.setdefault("truncated", command.truncated)
        return cls(status, message, **kw)

    @classmethod
    def ok(cls, message: str = "", *, command: CommandResult | None = None, **kw: Any):
        return cls._make("ok", message, command, **kw)

    @classmethod
    def changed(cls, message: str = "", *, command: CommandResult | None = None, **kw: Any):
        return cls._make("changed", message, command, **kw)

    @classmethod
    def failed(cls, message: str = "", *, command: CommandResult | None = None, **kw: Any):
        return cls._make("failed", message, command, **kw)

    @classmethod
    def skipped(cls, message: str = "", **kw: Any):
        return cls("skipped", message, **kw)


Emit = Callable[[str, str], None]
"""emit(stream, text): stream is "stdout", "stderr" or "progress"."""


@dataclass(frozen=True)
class TaskContext:
    """Everything a task may touch on one host."""

    host: HostRecord
    conn: Connector
    """The connection, as the Connector interface (direct or relayed: the task cannot tell)."""
    secrets: Mapping[str, Any] = field(default_factory=dict)
    """The secrets the task declared in ``Task.secrets`` (mssp.vault.Secret values)."""
    emit: Emit = lambda stream, text: None
    """Send live output or progress to views (neutralised by the engine)."""
    check_mode: bool = False
    deadline: float | None = None
    """time.monotonic() by which the host's work must end (the per-host timeout)."""

    def remaining(self) -> float | None:
        """Seconds left before the per-host timeout, or None without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    async def run(self, command: str, **kwargs: Any) -> CommandResult:
        """``conn.run`` with the command's timeout bounded by what is left of the host's."""
        left = self.remaining()
        if left is not None:
            if left <= 0:
                raise CommandTimeout("the host's time ran out before the command started")
            timeout = kwargs.get("timeout")
            kwargs["timeout"] = left if timeout is None else min(timeout, left)
        return await self.conn.run(command, **kwargs)


class Task(abc.ABC):
    """One kind of work on one host. Instances hold validated parameters and no host state."""

    name: ClassVar[str] = ""
    """Registry name, dotted: "command", "updates.apply"."""
    summary: ClassVar[str] = ""
    """One line for `mssp run --help` and the dashboard."""
    destructive: ClassVar[bool] = False
    """True when apply can lose data or availability (views ask for confirmation)."""
    params: ClassVar[tuple[Param, ...]] = ()
    secrets: ClassVar[tuple[str, ...]] = ()
    """Names of secrets the engine must hand to this task (resolved per host)."""

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        self.params: dict[str, Any] = self.validate(params or {})  # type: ignore[misc]

    @classmethod
    def validate(cls, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Check and convert parameters. ParameterError names the first problem."""
        known = {p.name: p for p in cls.params}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ParameterError(f"task {cls.name!r} has no parameter {unknown[0]!r}")
        values: dict[str, Any] = {}
        for param in cls.params:
            if param.name in raw:
                values[param.name] = param.coerce(raw[param.name])
            elif param.required:
                raise ParameterError(f"task {cls.name!r} needs parameter {param.name!r}")
            else:
                values[param.name] = param.default
        return values

    @abc.abstractmethod
    async def check(self, ctx: TaskContext) -> Plan:
        """Read the host and return what apply would change. Must not change anything."""

    @abc.abstractmethod
    async def apply(self, ctx: TaskContext, plan: Plan) -> TaskResult:
        """Make the planned changes."""

    async def verify(self, ctx: TaskContext, plan: Plan, result: TaskResult) -> TaskResult:
        """Confirm the change took; return the final result. Default: the apply result."""
        return result


_REGISTRY: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    """Class decorator adding a task to the registry under ``cls.name``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise TypeError(f"task name {cls.name!r} is taken by {existing.__name__}")
    _REGISTRY[cls.name] = cls
    return cls


def get_task(name: str) -> type[Task]:
    """The task class registered under ``name``. ParameterError (exit 2) when unknown.

    A task "updates.apply" lives in the module ``mssp.tasks.updates``: only that module is
    imported, so one broken task module cannot stop the others.
    """
    if name not in _REGISTRY:
        module = name.split(".", 1)[0]
        if module.isidentifier():
            try:
                importlib.import_module(f"mssp.tasks.{module}")
            except ModuleNotFoundError as exc:
                if exc.name != f"mssp.tasks.{module}":
                    raise
    if name not in _REGISTRY:
        from mssp.tasks import load_builtin_tasks

        load_builtin_tasks()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ParameterError(f"unknown task {name!r} (known: {known})") from None


def all_tasks() -> dict[str, type[Task]]:
    from mssp.tasks import load_builtin_tasks

    load_builtin_tasks()
    return dict(sorted(_REGISTRY.items()))
