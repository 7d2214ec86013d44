"""Read an Ansible INI inventory into the shared graph, following ansible-core's ini plugin.

Sections ``[group]``, ``[group:children]``, ``[group:vars]``; hosts before any section are
ungrouped; ``host:port``; ``key=value`` host vars parsed with Python literal rules as Ansible does
(``2222`` is a number, ``'a b'`` a string); a child group must be defined by its own section.
Values starting with ``$ANSIBLE_VAULT;`` are kept as VaultValue (flagged, never decrypted).
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from typing import Any

from mssp.errors import InventoryError
from mssp.importers.ansible_model import Inventory, VaultValue, expand_host_pattern, is_vault_text

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUPNAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
_HOSTPORT = re.compile(r"^(?P<host>[^:\[\]]+|\[[^\]]+\][^:]*):(?P<port>\d+)$")
_BRACKETED_V6 = re.compile(r"^\[(?P<host>[0-9a-fA-F:.]+)\](?::(?P<port>\d+))?$")


def parse_value(text: str, source: str) -> Any:
    """Ansible's INI value rule: a Python literal when it parses as one, else the text."""
    if is_vault_text(text):
        return VaultValue(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return text
    if value is ... or isinstance(value, complex):
        return text
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def split_host(token: str, path: str, line: int) -> tuple[list[str], int | None]:
    port: int | None = None
    m6 = _BRACKETED_V6.match(token)
    if m6 and ":" in m6.group("host"):
        return [m6.group("host")], int(m6.group("port")) if m6.group("port") else None
    m = _HOSTPORT.match(token)
    if m:
        token, port = m.group("host"), int(m.group("port"))
    elif token.endswith(":"):
        raise InventoryError(
            f"host pattern {token!r} ends in ':' (reserved for a port)", path=path, line=line
        )
    names = expand_host_pattern(token, path=path, line=line)
    if any(n.strip() == "---" for n in names):
        raise InventoryError(
            "'---' in an INI inventory: is this a YAML file?", path=path, line=line
        )
    return names, port


def read_ini(inv: Inventory, text: str, path: str) -> None:
    """Populate ``inv`` from INI text. InventoryError names file and line on the first problem."""
    pending: dict[str, dict[str, Any]] = {}
    group, state = "ungrouped", "hosts"
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        src = f"{path}:{lineno}"
        if not line or line[0] in "#;":
            continue
        m = _SECTION.match(line)
        if m:
            name, kind = m.group(1), m.group(2) or "hosts"
            if kind not in ("hosts", "children", "vars"):
                raise InventoryError(
                    f"section [{name}:{kind}] has unknown type {kind!r} (hosts, children, vars)",
                    path=path,
                    line=lineno,
                )
            fresh = name not in inv.groups
            group, state = inv.add_group(name, src), kind
            if fresh and kind == "vars" and group not in pending:
                pending[group] = {"line": lineno, "state": "vars", "parents": []}
            if group in pending and kind != "vars":
                if pending[group]["state"] == "children":
                    _add_pending_children(inv, group, pending, src)
                else:
                    del pending[group]
            continue
        if line.startswith("[") and line.endswith("]"):
            raise InventoryError(
                f"invalid section {line!r} (no spaces or other characters inside [ ])",
                path=path,
                line=lineno,
            )
        if state == "hosts":
            try:
                tokens = shlex.split(line, comments=True)
            except ValueError as exc:
                raise InventoryError(f"bad host line: {exc}", path=path, line=lineno) from None
            if not tokens:
                continue
            names, port = split_host(tokens[0], path, lineno)
            variables: dict[str, Any] = {}
            for tok in tokens[1:]:
                if "=" not in tok:
                    # the token is not echoed: it may be half of "ansible_password= secret"
                    raise InventoryError(
                        f"expected key=value after the host name (word {tokens.index(tok) + 1})",
                        path=path,
                        line=lineno,
                    )
                key, value = tok.split("=", 1)
                variables[key] = parse_value(value, src)
            for name in names:
                inv.add_host(group, name, src)
                if port is not None:
                    inv.set_host_var(name, "ansible_port", port, src)
                for key, value in variables.items():
                    inv.set_host_var(name, key, value, src)
        elif state == "vars":
            if "=" not in line:
                raise InventoryError(
                    f"expected key=value in [{group}:vars] "
                    "(the line is not shown: it may hold a secret)",
                    path=path,
                    line=lineno,
                )
            key, value = (part.strip() for part in line.split("=", 1))
            inv.set_group_var(group, key, parse_value(value, src), src)
        else:
            gm = _GROUPNAME.match(line)
            if not gm:
                raise InventoryError(f"expected a group name, got {line!r}", path=path, line=lineno)
            child = gm.group(1)
            if child not in inv.groups:
                decl = pending.setdefault(
                    child, {"line": lineno, "state": "children", "parents": []}
                )
                decl["parents"].append(group)
            else:
                inv.add_child(group, child, src)
    for name, decl in pending.items():
        if decl["state"] == "vars":
            raise InventoryError(
                f"section [{name}:vars] is for a group that is never defined",
                path=path,
                line=decl["line"],
            )
        raise InventoryError(
            f"[{decl['parents'][-1]}:children] names group {name!r}, which has no section",
            path=path,
            line=decl["line"],
        )


def _add_pending_children(
    inv: Inventory, group: str, pending: dict[str, dict[str, Any]], src: str
) -> None:
    for parent in pending[group]["parents"]:
        inv.add_child(parent, group, src)
        if parent in pending and pending[parent]["state"] == "children":
            _add_pending_children(inv, parent, pending, src)
    del pending[group]
