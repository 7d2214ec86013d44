"""Local accounts: a user present / absent / disabled / enabled, password, SSH keys, groups, admin.

``accounts.user`` does it all; ``accounts.disable`` / ``enable`` / ``remove`` / ``key`` are the
one-parameter forms a joiner/leaver needs (``mssp run accounts.disable 'client:acme' --param
user=jdoe`` disables jdoe everywhere at that client; hosts without jdoe report "not present").

Linux (``_linux`` below): useradd / usermod / gpasswd / userdel, passwords through
``chpasswd`` on stdin, authorized_keys written from stdin with the user's ownership and modes
0700/0600. Windows (mssp.tasks.windows.accounts): the LocalAccounts cmdlets, parameters as JSON on
stdin. A password comes from the vault: ``password_secret=NAME`` names a vault credential, which
the engine resolves for this task (``Task.secrets``); it never appears in a command line, a plan,
a result or a message.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Any

from mssp.errors import ParameterError, TaskError
from mssp.tasks import validate
from mssp.tasks.base import Param, Plan, Task, TaskContext, TaskResult, register
from mssp.tasks.parsers import SECTION
from mssp.tasks.parsers.accounts import LinuxAccount, parse_linux_account
from mssp.tasks.reboot import as_root, is_windows

STATES = ("present", "enabled", "disabled", "absent")
SECRET_PREFIX = "credential:"  # noqa: S105 (a name prefix, not a secret)


@dataclass(frozen=True)
class Desired:
    """What the account should look like; None / empty means "leave as it is"."""

    user: str
    state: str
    """present (create if missing), enabled, disabled (never creates), absent."""
    comment: str = ""
    shell: str = "/bin/bash"
    password: bool = False
    """A password from the vault is to be set (on creation, or always: see update_password)."""
    update_password: str = "on_create"  # noqa: S105 (a policy name)
    groups: tuple[str, ...] = ()
    remove_groups: tuple[str, ...] = ()
    admin: str = "keep"
    """keep | yes | no: membership of sudo/wheel, or the Administrators group on Windows."""
    keys_add: tuple[str, ...] = ()
    keys_remove: tuple[str, ...] = ()
    remove_home: bool = False
    kill_sessions: bool = True


@dataclass(frozen=True)
class Step:
    """One planned change: what to do (op) with which argument, and how to say it."""

    op: str
    arg: str = ""
    text: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"op": self.op, "arg": self.arg, "text": self.text}


PASSWORD_ALPHABET = string.ascii_letters + string.digits + "-_.!%+="


def generate_password(length: int = 24) -> str:
    """A random password for a new account (to store in the vault before a run uses it).

    Meets Windows' complexity rule (upper, lower, digit, symbol) and contains nothing chpasswd,
    a shell or JSON treats specially (no ':', quotes, '$', backslash or whitespace).
    """
    if length < 12:
        raise ParameterError("a generated password has at least 12 characters")
    while True:
        value = "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))
        classes = (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum())
        if all(any(test(c) for c in value) for test in classes):
            return value


def _comment(value: Any) -> None:
    if not all(ch.isalnum() or ch in " ._-" for ch in value) or len(value) > 64:
        raise ParameterError("comment: letters, digits, spaces and '._-' only, at most 64")


def _admin(value: Any) -> None:
    if value not in ("keep", "yes", "no"):
        raise ParameterError("admin must be keep, yes or no")


def _secret_name(value: Any) -> None:
    if value:
        validate.credential_name(value)


USER = Param("user", str, help="Account name", validate=validate.user)


class AccountsTask(Task):
    """Shared check → apply → verify over a Desired account state, Linux or Windows."""

    def desired(self) -> Desired:
        raise NotImplementedError

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        super().__init__(params)
        secret = self.params.get("password_secret") or ""
        # The engine resolves exactly the secrets a task instance names (Task.secrets).
        self.secrets = (SECRET_PREFIX + secret,) if secret else ()  # type: ignore[misc]

    def _backend(self, ctx: TaskContext) -> Any:
        if is_windows(ctx):
            from mssp.tasks.windows import accounts

            return accounts
        return _linux

    async def check(self, ctx: TaskContext) -> Plan:
        want = self.desired()
        backend = self._backend(ctx)
        state = await backend.read(ctx, want)
        steps = backend.plan(state, want)
        data = {"user": want.user, "present": state.exists, "steps": [s.as_dict() for s in steps]}
        if not state.exists and want.state in ("disabled", "absent"):
            data["message"] = "not present"
        return Plan(changes=tuple(s.text for s in steps), data=data)

    async def apply(self, ctx: TaskContext, plan: Plan) -> TaskResult:
        want = self.desired()
        steps = [Step(**s) for s in plan.data["steps"]]
        password = None
        if any(s.op in ("create", "password") for s in steps) and want.password:
            password = self._password(ctx)
        await self._backend(ctx).apply(ctx, want, steps, password)
        return TaskResult.changed(
            "; ".join(s.text for s in steps),
            data={
                "user": want.user,
                "existed": plan.data["present"],
                "done": [s.op for s in steps],
            },
        )

    async def verify(self, ctx: TaskContext, plan: Plan, result: TaskResult) -> TaskResult:
        want = self.desired()
        backend = self._backend(ctx)
        left = [s for s in backend.plan(await backend.read(ctx, want), want) if s.op != "password"]
        if left:
            return TaskResult.failed(
                "the account did not reach the wanted state: " + "; ".join(s.text for s in left),
                data=result.data,
            )
        return result

    def _password(self, ctx: TaskContext) -> str:
        name = self.secrets[0] if self.secrets else ""
        secret = ctx.secrets.get(name)
        if secret is None:
            raise TaskError("a password is to be set but no vault secret was handed to the task")
        value = secret.reveal() if hasattr(secret, "reveal") else str(secret)
        if not value or any(ch in value for ch in "\n\r:\x00"):
            # chpasswd reads "user:password" lines: a newline or colon would corrupt it
            raise TaskError("the vault password contains a newline, ':' or NUL; not usable")
        return value


def _user_params() -> tuple[Param, ...]:
    return (
        USER,
        Param("state", str, default="present", choices=STATES, help="Wanted state"),
        Param("comment", str, default="", help="Full name (GECOS)", validate=_comment),
        Param("shell", str, default="/bin/bash", validate=validate.absolute_path),
        Param(
            "password_secret",
            str,
            default="",
            help="Vault credential holding the password",
            validate=_secret_name,
        ),
        Param("update_password", str, default="on_create", choices=("on_create", "always")),
        Param("groups", list, default=[], validate=validate.each(validate.group)),
        Param("remove_groups", list, default=[], validate=validate.each(validate.group)),
        Param("admin", str, default="keep", help="keep, yes or no", validate=_admin),
        Param("ssh_key_add", list, default=[], validate=validate.each(validate.ssh_public_key)),
        Param("ssh_key_remove", list, default=[], validate=validate.each(validate.ssh_public_key)),
        Param("remove_home", bool, default=False, help="With state=absent: delete the home too"),
    )


@register
class AccountsUserTask(AccountsTask):
    """Bring one local account to the wanted state."""

    name = "accounts.user"
    summary = "Create, change, disable or remove a local user (password, keys, groups, admin)"
    destructive = True
    params = _user_params()

    def desired(self) -> Desired:
        p = self.params
        return Desired(
            user=p["user"],
            state=p["state"],
            comment=p["comment"],
            shell=p["shell"],
            password=bool(p["password_secret"]),
            update_password=p["update_password"],
            groups=tuple(p["groups"]),
            remove_groups=tuple(p["remove_groups"]),
            admin=p["admin"],
            keys_add=tuple(validate.normalise_key(k) for k in p["ssh_key_add"]),
            keys_remove=tuple(validate.normalise_key(k) for k in p["ssh_key_remove"]),
            remove_home=p["remove_home"],
        )


@register
class AccountsDisableTask(AccountsTask):
    """Disable a user wherever it exists (locked, expired, sessions ended); absent → ok."""

    name = "accounts.disable"
    summary = "Disable a user everywhere it exists (leaver); reports where it existed"
    destructive = True
    params = (USER,)

    def desired(self) -> Desired:
        return Desired(user=self.params["user"], state="disabled")


@register
class AccountsEnableTask(AccountsTask):
    """Re-enable a disabled user (never creates one)."""

    name = "accounts.enable"
    summary = "Re-enable a disabled user where it exists"
    params = (USER,)

    def desired(self) -> Desired:
        return Desired(user=self.params["user"], state="enabled_existing")


@register
class AccountsRemoveTask(AccountsTask):
    """Delete a user (and optionally its home) wherever it exists."""

    name = "accounts.remove"
    summary = "Delete a user where it exists"
    destructive = True
    params = (USER, Param("remove_home", bool, default=False, help="Delete the home directory"))

    def desired(self) -> Desired:
        return Desired(
            user=self.params["user"], state="absent", remove_home=self.params["remove_home"]
        )


@register
class AccountsKeyTask(AccountsTask):
    """Add or remove one SSH public key in an existing user's authorized_keys."""

    name = "accounts.key"
    summary = "Add or remove an SSH authorized key of an existing user"
    params = (
        USER,
        Param("key", str, help="OpenSSH public key line", validate=validate.ssh_public_key),
        Param("state", str, default="present", choices=("present", "absent")),
    )

    def desired(self) -> Desired:
        key = validate.normalise_key(self.params["key"])
        if self.params["state"] == "present":
            return Desired(user=self.params["user"], state="existing", keys_add=(key,))
        return Desired(user=self.params["user"], state="existing", keys_remove=(key,))


# ------------------------------------------------------------------------------ Linux ----


def linux_read_script(user: str) -> str:
    u = validate.quote(user)
    # Key lines are prefixed with "|" so no line a user controls can look like a section marker.
    return (
        "LC_ALL=C; export LC_ALL\n"
        f"u={u}\n"
        f"echo '{SECTION}passwd'; getent passwd \"$u\" || true\n"
        f"echo '{SECTION}shadow'; getent shadow \"$u\" || true\n"
        f"echo '{SECTION}group'; getent group\n"
        f"echo '{SECTION}today'; echo $(( $(date +%s) / 86400 ))\n"
        f"echo '{SECTION}keys'; h=$(getent passwd \"$u\" | cut -d: -f6)\n"
        'if [ -n "$h" ] && [ -f "$h/.ssh/authorized_keys" ]; then '
        "sed 's/^/|/' \"$h/.ssh/authorized_keys\"; fi\n"
    )


def new_keys(current: tuple[str, ...], want: Desired) -> tuple[str, ...]:
    """authorized_keys after adding/removing keys (matched by type and body, not comment)."""
    drop = {validate.key_identity(k) for k in want.keys_remove}
    lines = [line for line in current if validate.key_identity(line) not in drop or not line]
    have = {validate.key_identity(line) for line in lines}
    lines += [k for k in want.keys_add if validate.key_identity(k) not in have]
    return tuple(lines)


class _linux:
    """Linux backend: read, plan (pure), apply."""

    @staticmethod
    async def read(ctx: TaskContext, want: Desired) -> LinuxAccount:
        result = await ctx.run(linux_read_script(want.user), become=as_root(ctx), timeout=60)
        return parse_linux_account(result.stdout, want.user)

    @staticmethod
    def plan(acct: LinuxAccount, want: Desired) -> list[Step]:
        return plan_common(acct, want, admin_group=acct.admin_group, keys=acct.keys)

    @staticmethod
    async def apply(
        ctx: TaskContext, want: Desired, steps: list[Step], password: str | None
    ) -> None:
        if want.user in ("root", ctx.host.username) and any(
            s.op in ("disable", "remove") for s in steps
        ):
            raise TaskError(f"refusing to disable or remove {want.user!r}: mssp logs in with it")
        user = validate.quote(want.user)
        root = as_root(ctx)
        for step in steps:
            stdin = None
            if step.op == "create":
                comment = f" --comment {validate.quote(want.comment)}" if want.comment else ""
                command = (
                    f"useradd --create-home --shell {validate.quote(want.shell)}{comment} {user}"
                )
            elif step.op == "password":
                if password is None:
                    continue
                command, stdin = "chpasswd", f"{want.user}:{password}\n"
            elif step.op == "disable":
                command = (
                    f"usermod --lock --expiredate 1 {user} && {{ pkill -KILL -u {user} || true; }}"
                )
            elif step.op == "enable":
                command = f"usermod --expiredate '' {user}"
                if step.arg == "unlock":
                    command += f" && usermod --unlock {user}"
            elif step.op == "remove":
                home = " --remove" if want.remove_home else ""
                command = f"{{ pkill -KILL -u {user} || true; }}; userdel{home} {user}"
            elif step.op in ("add_group", "remove_group"):
                flag = "-a" if step.op == "add_group" else "-d"
                command = f"gpasswd {flag} {user} {validate.quote(step.arg)} >/dev/null"
            elif step.op == "keys":
                acct = await _linux.read(ctx, want)
                validate.absolute_path(acct.home)  # from the host: must be a plain path
                lines = new_keys(acct.keys, want)
                command = authorized_keys_script(want.user, acct.primary_group, acct.home)
                stdin = "".join(line + "\n" for line in lines)
            else:
                raise TaskError(f"unknown account step {step.op!r}")
            await ctx.run(command, stdin=stdin, become=root, timeout=120, check=True)


def authorized_keys_script(user: str, group: str, home: str) -> str:
    """Write stdin as ~user/.ssh/authorized_keys: 0700 dir, 0600 file, owned by the user.

    Replaced atomically (temp file + rename in the same directory); a symbolic link where .ssh
    or the file should be is refused (root must not follow a user's link elsewhere).
    """
    u, g = validate.quote(user), validate.quote(group)
    d = validate.quote(home.rstrip("/") + "/.ssh")
    return (
        f"set -e; d={d}\n"
        'if [ -L "$d" ] || [ -L "$d/authorized_keys" ]; then '
        'echo "refusing: $d or its authorized_keys is a symbolic link" >&2; exit 3; fi\n'
        f'install -d -m 700 -o {u} -g {g} "$d"\n'
        't=$(mktemp "$d/.authorized_keys.XXXXXX")\n'
        'cat > "$t"\n'
        f'chown {u}:{g} "$t"; chmod 600 "$t"\n'
        'mv -f "$t" "$d/authorized_keys"\n'
    )


def plan_common(acct: Any, want: Desired, *, admin_group: str, keys: tuple[str, ...]) -> list[Step]:
    """The steps from an account's current state to the wanted one (pure; both platforms)."""
    if not acct.exists:
        if want.state in ("existing",):
            raise TaskError(f"user {want.user!r} does not exist on this host")
        if want.state not in ("present", "enabled"):
            return []
        steps = [Step("create", text=f"create user {want.user}")]
        if want.password:
            steps.append(Step("password", text="set the password from the vault"))
    elif want.state == "absent":
        return [
            Step(
                "remove",
                text=f"remove user {want.user}" + (" and its home" if want.remove_home else ""),
            )
        ]
    else:
        steps = []
        if want.state == "disabled" and not acct.disabled:
            return [Step("disable", text=f"disable user {want.user} (lock, expire, end sessions)")]
        if want.state == "disabled":
            return []
        if want.state in ("enabled", "enabled_existing") and acct.disabled:
            unlock = (
                "unlock"
                if getattr(acct, "password_locked", False) and getattr(acct, "has_password", False)
                else ""
            )
            steps.append(Step("enable", unlock, f"enable user {want.user}"))
        if want.password and want.update_password == "always":  # noqa: S105
            steps.append(Step("password", text="set the password from the vault"))
    member_of = acct.member_of if acct.exists else frozenset()
    known = acct.groups
    wanted = list(want.groups)
    unwanted = list(want.remove_groups)
    if want.admin != "keep":
        if not admin_group:
            raise TaskError("this host has no sudo, wheel or admin group")
        (wanted if want.admin == "yes" else unwanted).append(admin_group)
    for group in wanted:
        if known and group not in known:
            raise TaskError(f"group {group!r} does not exist on this host")
        if group not in member_of:
            steps.append(Step("add_group", group, f"add {want.user} to {group}"))
    for group in unwanted:
        if group in member_of:
            steps.append(Step("remove_group", group, f"remove {want.user} from {group}"))
    if want.keys_add or want.keys_remove:
        after = new_keys(keys, want)
        if after != tuple(keys):
            added = len(set(after) - set(keys))
            removed = len(set(keys) - set(after))
            steps.append(Step("keys", text=f"authorized_keys: add {added}, remove {removed}"))
    return steps
