"""Read Ansible YAML inventories and group_vars/host_vars files (safe YAML only, vault-aware).

The loader is PyYAML's SafeLoader (no Python objects are ever constructed) plus two things Ansible
files need: the ``!vault`` tag (kept as VaultValue, never decrypted) and ``!unsafe`` (plain
text); mapping keys remember their line so errors and the preview can name it. It is driven the
way ``yaml.safe_load`` drives SafeLoader (construct, get_single_data, dispose).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from mssp.errors import InventoryError
from mssp.importers.ansible_ini import split_host
from mssp.importers.ansible_model import Inventory, VaultValue, is_vault_text


class LineStr(str):
    """A string that remembers the (1-based) line it was read from."""

    line: int = 0


class _AnsibleSafeLoader(yaml.SafeLoader):
    """SafeLoader with Ansible's !vault and !unsafe tags and line-numbered strings."""

    path = ""


def _construct_str(loader: _AnsibleSafeLoader, node: yaml.ScalarNode) -> str:
    value = LineStr(loader.construct_scalar(node))
    value.line = node.start_mark.line + 1
    return value


def _construct_vault(loader: _AnsibleSafeLoader, node: yaml.Node) -> VaultValue:
    return VaultValue(f"{loader.path}:{node.start_mark.line + 1}")


def _construct_unsafe(loader: _AnsibleSafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return _construct_str(loader, node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]


_AnsibleSafeLoader.add_constructor("tag:yaml.org,2002:str", _construct_str)
_AnsibleSafeLoader.add_constructor("!vault", _construct_vault)
_AnsibleSafeLoader.add_constructor("!unsafe", _construct_unsafe)


def load_yaml(text: str, path: str) -> Any:
    """Parse YAML text safely; InventoryError with file and line on a syntax error."""
    loader: _AnsibleSafeLoader | None = None
    try:
        loader = _AnsibleSafeLoader(text)  # the reader already rejects control characters
        loader.path = path
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise InventoryError(f"YAML: {exc.problem or exc.context}", path=path, line=line) from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise InventoryError(
            f"YAML: character {exc.character:#x} is not allowed", path=path, line=line
        ) from None
    except yaml.YAMLError as exc:
        raise InventoryError(f"YAML: {type(exc).__name__}", path=path) from None
    except RecursionError:
        raise InventoryError("YAML nested too deeply", path=path) from None
    finally:
        if loader is not None:
            loader.dispose()


def src(path: str, key: object) -> str:
    line = getattr(key, "line", 0)
    return f"{path}:{line}" if line else path


def _mark_vault_text(value: Any, where: str) -> Any:
    return VaultValue(where) if is_vault_text(value) else value


def read_yaml(inv: Inventory, text: str, path: str) -> None:
    """Populate ``inv`` from a YAML inventory (ansible-core's yaml plugin rules)."""
    data = load_yaml(text, path)
    if not data:
        raise InventoryError("empty YAML inventory", path=path)
    if not isinstance(data, Mapping):
        raise InventoryError(
            f"a YAML inventory is a mapping of groups, not a {type(data).__name__}", path=path
        )
    if "plugin" in data:
        raise InventoryError(
            "this is an inventory plugin configuration, not an inventory: run "
            "`ansible-inventory -i FILE --list -y > hosts.yml` and import that",
            path=path,
        )
    for name, body in data.items():
        _group(inv, name, body, path)


def _group(inv: Inventory, name: object, body: Any, path: str) -> str:
    where = src(path, name)
    if not isinstance(name, str):
        raise InventoryError(f"group name {name!r} is not text", path=path)
    if body is not None and not isinstance(body, Mapping):
        raise InventoryError(
            f"group {name!r} must be a mapping with hosts/children/vars",
            path=path,
            line=_line(name),
        )
    group = inv.add_group(name, where)
    for key, section in (body or {}).items():
        if key not in ("hosts", "children", "vars"):
            raise InventoryError(
                f"unexpected key {key!r} in group {name!r} (only hosts, children, vars)",
                path=path,
                line=_line(key),
            )
        if isinstance(section, str):
            section = {section: None}
        if section is None:
            continue
        if not isinstance(section, Mapping):
            raise InventoryError(
                f"{key!r} of group {name!r} must be a mapping, not a {type(section).__name__}",
                path=path,
                line=_line(key),
            )
        if key == "vars":
            for var, value in section.items():
                inv.set_group_var(
                    group, str(var), _mark_vault_text(value, src(path, var)), src(path, var)
                )
        elif key == "children":
            for child, child_body in section.items():
                child_name = _group(inv, child, child_body, path)
                inv.add_child(group, child_name, src(path, child))
        else:
            for pattern, host_vars in section.items():
                _hosts(inv, group, pattern, host_vars, path)
    return group


def _hosts(inv: Inventory, group: str, pattern: object, host_vars: Any, path: str) -> None:
    if not isinstance(pattern, str):
        raise InventoryError(
            f"host {pattern!r} must be text (quote numbers) in group {group!r}", path=path
        )
    line = _line(pattern)
    if host_vars is not None and not isinstance(host_vars, Mapping):
        raise InventoryError(
            f"variables of host {pattern!r} must be a mapping", path=path, line=line
        )
    names, port = split_host(pattern, path, line or 0)
    where = src(path, pattern)
    for name in names:
        inv.add_host(group, name, where)
        if port is not None:
            inv.set_host_var(name, "ansible_port", port, where)
        for var, value in (host_vars or {}).items():
            inv.set_host_var(
                name, str(var), _mark_vault_text(value, src(path, var)), src(path, var)
            )


def _line(key: object) -> int | None:
    return getattr(key, "line", None) or None


def read_vars_file(text: str, path: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A group_vars/host_vars file: a mapping (or empty). Returns values and per-key sources."""
    data = load_yaml(text, path)
    if data is None:
        return {}, {}
    if not isinstance(data, Mapping):
        raise InventoryError(
            f"a vars file must be a mapping, not a {type(data).__name__}", path=path
        )
    values = {str(k): _mark_vault_text(v, src(path, k)) for k, v in data.items()}
    return values, {str(k): src(path, k) for k in data}
