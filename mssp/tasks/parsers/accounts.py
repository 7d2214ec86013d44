"""Parser of a Linux account as the accounts tasks read it (getent passwd/shadow/group, keys)."""

from __future__ import annotations

from dataclasses import dataclass

from mssp.errors import TaskError
from mssp.tasks.parsers import linux as lx
from mssp.tasks.parsers import split_sections

ADMIN_GROUPS = ("sudo", "wheel", "admin")


@dataclass(frozen=True)
class LinuxAccount:
    """One user as read from the host (all from getent and the user's authorized_keys)."""

    exists: bool
    disabled: bool = False
    password_locked: bool = False
    has_password: bool = False
    uid: int = -1
    home: str = ""
    primary_group: str = ""
    member_of: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    """Every group name on the host."""
    admin_group: str = ""
    keys: tuple[str, ...] = ()
    """authorized_keys lines as they are."""


def parse_linux_account(text: str, user: str) -> LinuxAccount:
    """The account from linux_read_script's output (pure)."""
    s = split_sections(text)
    if "today" not in s:
        raise TaskError("cannot read the account (is getent available, and are we root?)")
    groups = lx.parse_group(s.get("group", ""))
    names = frozenset(g.name for g in groups)
    admin_group = next((g for g in ADMIN_GROUPS if g in names), "")
    entry = next((e for e in lx.parse_passwd(s.get("passwd", "")) if e.name == user), None)
    if entry is None:
        return LinuxAccount(exists=False, groups=names, admin_group=admin_group)
    shadow = lx.parse_shadow(s.get("shadow", "").strip())
    today = int(s["today"].strip() or 0)
    primary = next((g.name for g in groups if g.gid == entry.gid), str(entry.gid))
    keys = tuple(line[1:] for line in s.get("keys", "").splitlines() if line.startswith("|"))
    return LinuxAccount(
        exists=True,
        disabled=bool(shadow and shadow.expired(today)),
        password_locked=bool(shadow and shadow.password_locked),
        has_password=bool(shadow and shadow.has_password),
        uid=entry.uid,
        home=entry.home,
        primary_group=primary,
        member_of=frozenset(g.name for g in groups if user in g.members) | {primary},
        groups=names,
        admin_group=admin_group,
        keys=keys,
    )
