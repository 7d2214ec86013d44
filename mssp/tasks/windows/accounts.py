"""Windows backend of the accounts tasks: LocalAccounts cmdlets, parameters as JSON on stdin."""

from __future__ import annotations

from dataclasses import dataclass

from mssp.errors import TaskError
from mssp.tasks.base import TaskContext
from mssp.tasks.parsers.windows import parse_user_state
from mssp.tasks.windows import USER_APPLY, USER_STATE, run_ps


@dataclass(frozen=True)
class WindowsAccount:
    """The account in the shape the shared planner reads."""

    exists: bool
    disabled: bool
    member_of: frozenset[str]
    groups: frozenset[str]
    """Empty: Windows group existence is left to Add-LocalGroupMember to check."""
    admin_group: str


async def read(ctx: TaskContext, want: object) -> WindowsAccount:
    user = want.user  # type: ignore[attr-defined]
    state = parse_user_state(await run_ps(ctx, USER_STATE, {"user": user}, what="local user"))
    return WindowsAccount(
        exists=state.exists,
        disabled=state.exists and not state.enabled,
        member_of=frozenset(g.lower() for g in state.groups),
        groups=frozenset(),
        admin_group=state.administrators_group,
    )


def plan(acct: WindowsAccount, want: object) -> list:
    from mssp.tasks.accounts import plan_common

    if want.keys_add or want.keys_remove:  # type: ignore[attr-defined]
        raise TaskError("SSH authorized keys are not managed on Windows hosts")
    lowered = _lower_groups(want)
    return plan_common(acct, lowered, admin_group=acct.admin_group.lower(), keys=())


def _lower_groups(want: object) -> object:
    """Windows group names compare case-insensitively."""
    from dataclasses import replace

    return replace(
        want,  # type: ignore[type-var]
        groups=tuple(g.lower() for g in want.groups),  # type: ignore[attr-defined]
        remove_groups=tuple(g.lower() for g in want.remove_groups),  # type: ignore[attr-defined]
    )


async def apply(ctx: TaskContext, want: object, steps: list, password: str | None) -> None:
    user = want.user  # type: ignore[attr-defined]
    if user.lower() == ctx.host.username.lower() and any(
        s.op in ("disable", "remove") for s in steps
    ):
        raise TaskError(f"refusing to disable or remove {user!r}: mssp logs in with it")
    actions: list[dict[str, str]] = []
    for step in steps:
        if step.op == "create":
            if password is None:
                raise TaskError("Windows needs a password to create a user: set password_secret")
            actions.append(
                {"op": "create", "password": password, "full_name": want.comment}  # type: ignore[attr-defined]
            )
        elif step.op == "password":
            if password is not None and not any(a["op"] == "create" for a in actions):
                actions.append({"op": "set_password", "password": password})
        elif step.op in ("disable", "enable", "remove"):
            actions.append({"op": step.op})
        elif step.op in ("add_group", "remove_group"):
            actions.append({"op": step.op, "group": step.arg})
        else:
            raise TaskError(f"{step.op!r} is not supported on Windows")
    # The password travels inside the JSON on stdin; run_ps never echoes the request.
    await run_ps(ctx, USER_APPLY, {"user": user, "actions": actions}, what="local user change")
