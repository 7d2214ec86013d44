"""The Ansible inventory graph (groups, children, hosts, vars) and Ansible's variable precedence.

Shared by the INI and YAML readers. Mirrors ansible-core's ``InventoryData``/``Group``/``Host``:
group names are made safe the way Ansible does (``web-servers`` → ``web_servers``), every group
without a parent is a child of ``all``, hosts in no group are in ``ungrouped``, a group's depth
is its longest distance from ``all``, and a cycle of children is an error.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Any

from mssp.errors import InventoryError

#: a bound on one range pattern, so that "h[0:99999]-[0:99999]" cannot exhaust memory
MAX_RANGE_HOSTS = 10_000
_UNSAFE_GROUP_CHARS = re.compile(r"^[\d\W]|[^\w]")


@dataclass(frozen=True)
class VaultValue:
    """A value encrypted with Ansible Vault: flagged in the preview, never decrypted."""

    source: str

    def __repr__(self) -> str:
        return "VaultValue(<encrypted>)"


@dataclass
class Group:
    name: str
    source: str
    vars: dict[str, Any] = field(default_factory=dict)
    var_sources: dict[str, str] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    priority: int = 1
    """ansible_group_priority: orders groups of the same depth (Ansible keeps it out of vars)."""


@dataclass
class Host:
    name: str
    source: str
    vars: dict[str, Any] = field(default_factory=dict)
    var_sources: dict[str, str] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)


def safe_group_name(name: str) -> str:
    """Ansible's to_safe_group_name: invalid characters (and a leading digit) become '_'."""
    return _UNSAFE_GROUP_CHARS.sub("_", name)


def is_vault_text(value: object) -> bool:
    return isinstance(value, str) and value.lstrip().startswith("$ANSIBLE_VAULT;")


class Inventory:
    """Groups and hosts in definition order, as one or more inventory files describe them."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.groups: dict[str, Group] = {
            "all": Group("all", path),
            "ungrouped": Group("ungrouped", path),
        }
        self.hosts: dict[str, Host] = {}

    def add_group(self, name: str, source: str) -> str:
        name = safe_group_name(name)
        if name not in self.groups:
            self.groups[name] = Group(name, source)
        return name

    def add_child(self, parent: str, child: str, source: str) -> None:
        if child == "all":
            raise InventoryError("'all' cannot be a child group", path=source)
        p, c = self.groups[parent], self.groups[child]
        if parent == child or parent in self.descendants(child):
            path, _, line = source.rpartition(":")
            raise InventoryError(
                f"adding group {child!r} to {parent!r} makes a loop of children",
                path=path or source,
                line=int(line) if line.isdigit() else None,
            )
        if child not in p.children:
            p.children.append(child)
            c.parents.append(parent)

    def add_host(self, group: str | None, name: str, source: str) -> Host:
        host = self.hosts.get(name)
        if host is None:
            host = self.hosts[name] = Host(name, source)
        if group and group not in host.groups:
            host.groups.append(group)
            self.groups[group].hosts.append(name)
        return host

    def set_group_var(self, group: str, key: str, value: Any, source: str) -> None:
        g = self.groups[group]
        if key == "ansible_group_priority":
            try:
                g.priority = int(value)
            except (TypeError, ValueError):
                path, _, line = source.rpartition(":")
                raise InventoryError(
                    f"ansible_group_priority of {group!r} must be a number, not {value!r}",
                    path=path if line.isdigit() else source,
                    line=int(line) if line.isdigit() else None,
                ) from None
            return
        g.vars[key] = value
        g.var_sources[key] = source

    def set_host_var(self, host: str, key: str, value: Any, source: str) -> None:
        h = self.hosts[host]
        h.vars[key] = value
        h.var_sources[key] = source

    def descendants(self, group: str) -> set[str]:
        out: set[str] = set()
        stack = list(self.groups[group].children)
        while stack:
            g = stack.pop()
            if g not in out:
                out.add(g)
                stack.extend(self.groups[g].children)
        return out

    def ancestors(self, group: str) -> set[str]:
        out: set[str] = set()
        stack = list(self.groups[group].parents)
        while stack:
            g = stack.pop()
            if g not in out:
                out.add(g)
                stack.extend(self.groups[g].parents)
        return out

    def reconcile(self) -> None:
        """Ansible's reconcile_inventory: parentless groups under all; groupless hosts ungrouped."""
        for name, group in self.groups.items():
            if name != "all" and not group.parents:
                self.add_child("all", name, group.source)
        ungrouped = self.groups["ungrouped"]
        for host in self.hosts.values():
            others = [g for g in host.groups if g != "ungrouped"]
            if "ungrouped" in host.groups and others:
                host.groups.remove("ungrouped")
                ungrouped.hosts.remove(host.name)
            elif not host.groups:
                self.add_host("ungrouped", host.name, host.source)

    def host_groups(self, host: str) -> set[str]:
        """Every group a host belongs to, directly or through children (without 'all')."""
        direct = set(self.hosts[host].groups)
        out = set(direct)
        for g in direct:
            out |= self.ancestors(g)
        out.discard("all")
        return out

    def depth(self, group: str) -> int:
        parents = self.groups[group].parents
        return 0 if not parents else 1 + max(self.depth(p) for p in parents)

    def sorted_groups(self, names: set[str]) -> list[str]:
        """Ansible's sort_groups: by depth, then ansible_group_priority, then name."""

        return sorted(names, key=lambda n: (self.depth(n), self.groups[n].priority, n))


@dataclass(frozen=True)
class ResolvedVars:
    """A host's variables after precedence, with where each final value came from."""

    values: dict[str, Any]
    sources: dict[str, str]


def resolve_vars(
    inv: Inventory,
    host: str,
    group_files: dict[str, tuple[dict[str, Any], str]],
    host_files: dict[str, tuple[dict[str, Any], str]],
) -> ResolvedVars:
    """Merge as ansible-core's VariableManager does (lowest first, later replaces earlier):

    inventory ``all`` vars < inventory vars of the host's other groups (sorted by depth, priority,
    name) < ``group_vars/all`` < ``group_vars/<group>`` in the same order < inventory host vars
    < ``host_vars/<host>``. A group_vars file beats the inventory file, even for a parent group.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def merge(data: dict[str, Any], where: dict[str, str] | str) -> None:
        for key, value in data.items():
            values[key] = value
            sources[key] = where if isinstance(where, str) else where.get(key, "")

    groups = inv.sorted_groups(inv.host_groups(host))
    merge(inv.groups["all"].vars, inv.groups["all"].var_sources)
    for g in groups:
        merge(inv.groups[g].vars, inv.groups[g].var_sources)
    for g in ["all", *groups]:
        if g in group_files:
            merge(*group_files[g])
    h = inv.hosts[host]
    merge(h.vars, h.var_sources)
    if host in host_files:
        merge(*host_files[host])
    return ResolvedVars(values, sources)


def expand_host_pattern(pattern: str, *, path: str, line: int | None) -> list[str]:
    """Expand ``web[01:10]``, ``db-[a:c]`` and ``x[1:9:2]`` ranges (several per name allowed)."""
    if "[" not in pattern:
        return [pattern]
    head, sep, rest = pattern.partition("[")
    body, sep2, tail = rest.partition("]")
    if not sep or not sep2:
        raise InventoryError(f"unbalanced '[' in host pattern {pattern!r}", path=path, line=line)
    bounds = body.split(":")
    if len(bounds) not in (2, 3):
        raise InventoryError(
            f"host range [{body}] must be begin:end or begin:end:step", path=path, line=line
        )
    beg, end = bounds[0] or "0", bounds[1]
    if not end:
        raise InventoryError(f"host range [{body}] needs an end", path=path, line=line)
    try:
        step = int(bounds[2]) if len(bounds) == 3 else 1
    except ValueError:
        raise InventoryError(
            f"host range step {bounds[2]!r} is not a number", path=path, line=line
        ) from None
    if step < 1:
        raise InventoryError(f"host range step must be positive in [{body}]", path=path, line=line)
    letters = string.ascii_letters
    if beg in letters and end in letters and len(beg) == len(end) == 1:
        if letters.index(beg) > letters.index(end):
            raise InventoryError(
                f"host range [{body}] must have begin <= end", path=path, line=line
            )
        seq = list(letters[letters.index(beg) : letters.index(end) + 1 : step])
    else:
        if not (beg.isdigit() and end.isdigit()):
            raise InventoryError(f"host range [{body}] is not numeric or a-z", path=path, line=line)
        width = len(beg) if beg.startswith("0") and len(beg) > 1 else 0
        if width and width != len(end):
            raise InventoryError(
                f"host range [{body}] must have equal-length begin and end", path=path, line=line
            )
        if int(end) - int(beg) > MAX_RANGE_HOSTS:
            raise InventoryError(f"host range [{body}] is too large", path=path, line=line)
        seq = [str(i).zfill(width) for i in range(int(beg), int(end) + 1, step)]
    out: list[str] = []
    for item in seq:
        out.extend(expand_host_pattern(f"{head}{item}{tail}", path=path, line=line))
        if len(out) > MAX_RANGE_HOSTS:
            raise InventoryError(
                f"host pattern {pattern!r} expands to more than {MAX_RANGE_HOSTS} hosts",
                path=path,
                line=line,
            )
    return out
