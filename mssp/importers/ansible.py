"""Import an Ansible inventory (INI or YAML, plus group_vars/ and host_vars/ beside it).

Variables are merged with Ansible's precedence (ansible_model.resolve_vars), then mapped:
``ansible_host``/``ansible_port``/``ansible_user`` (the legacy ``ansible_ssh_*`` names win when
both are set, as in Ansible's ssh plugin; ``ansible_winrm_*`` likewise for winrm);
``ansible_connection=winrm`` gives transport winrm; ``ansible_winrm_scheme``, ``_transport``
(ntlm/basic), ``_ca_trust_path`` and ``_message_encryption`` become the WinRM connector's host
options (scheme, auth, ca_file, message_encryption); ``server_cert_validation=ignore`` is refused
with a warning (mssp always validates or pins the certificate).
Passwords and vault-encrypted values are never imported: the preview flags them.

Where hosts land (the rule, also printed in the preview):
1. ``--client`` and ``--site`` given: every host goes there.
2. Otherwise the variables ``mssp_client`` / ``mssp_site`` (set anywhere Ansible allows: group
   vars, group_vars/ files, host vars) win for that host.
3. Otherwise the client is the host's top-level group (a direct child of ``all``), or
   ``--client``; among several top-level groups, those with child groups are preferred (a
   ``[webservers]`` group holding hosts is a role, not a client). The site is the child group of
   that client group the host is in (``main`` when it sits in the client group itself); with
   only ``--client`` given, the top-level group becomes the site. Still ambiguous: an error that
   names the host and its candidate groups.
4. Every other group of the host becomes a tag, plus ``mssp_tags`` (list or comma-separated).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mssp.errors import InventoryError
from mssp.importers.ansible_ini import read_ini
from mssp.importers.ansible_map import DEFAULT_SITE, map_host
from mssp.importers.ansible_model import Inventory, VaultValue, is_vault_text, resolve_vars
from mssp.importers.ansible_yaml import load_yaml, read_vars_file, read_yaml
from mssp.importers.files import read_text
from mssp.importers.plan import (
    ImportedHost,
    ImportNotice,
    ParsedInventory,
    merge_notices,
)

YAML_EXTENSIONS = (".yml", ".yaml", ".json")
VARS_EXTENSIONS = ("", ".yml", ".yaml", ".json")
SECRET_VARS = (
    "ansible_password",
    "ansible_ssh_pass",
    "ansible_ssh_password",
    "ansible_winrm_password",
    "ansible_become_password",
    "ansible_become_pass",
    "ansible_sudo_pass",
)


def load_inventory(path: Path) -> Inventory:
    """Parse the inventory file itself into the group/host graph (no vars folders)."""
    if path.is_dir():
        raise InventoryError("a directory: give the inventory file inside it", path=str(path))
    text = read_text(path)
    if is_vault_text(text):
        raise InventoryError(
            "the whole inventory is vault-encrypted; mssp never decrypts vault data: "
            "decrypt a copy with ansible-vault and import that",
            path=str(path),
        )
    inv = Inventory(str(path))
    if path.suffix.lower() in YAML_EXTENSIONS:
        read_yaml(inv, text, str(path))
    elif not path.suffix and _looks_like_yaml(text, str(path)):
        # Ansible tries its YAML reader first on a file without extension, then INI
        read_yaml(inv, text, str(path))
    else:
        read_ini(inv, text, str(path))
    inv.reconcile()
    return inv


def _looks_like_yaml(text: str, path: str) -> bool:
    try:
        data = load_yaml(text, path)
    except InventoryError:
        return False
    return isinstance(data, Mapping) and all(isinstance(v, Mapping | None) for v in data.values())


def _vars_files(base: Path, name: str) -> list[Path]:
    """ansible-core's find_vars_files: NAME, NAME.yml, NAME.yaml, NAME.json; the first wins."""
    for ext in VARS_EXTENSIONS:
        candidate = base / f"{name}{ext}"
        if candidate.is_dir():
            return _dir_files(candidate)
        if candidate.is_file():
            return [candidate]
    return []


def _dir_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or entry.name.endswith("~"):
            continue
        if entry.is_dir() and not entry.suffix:
            found.extend(_dir_files(entry))
        elif entry.is_file() and entry.suffix in VARS_EXTENSIONS:
            found.append(entry)
    return found


def load_vars_dir(
    base: Path, names: list[str], notices: list[ImportNotice]
) -> dict[str, tuple[dict[str, Any], dict[str, str]]]:
    out: dict[str, tuple[dict[str, Any], dict[str, str]]] = {}
    if not base.is_dir():
        return out
    for name in names:
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for file in _vars_files(base, name):
            text = read_text(file)
            if is_vault_text(text):
                notices.append(
                    ImportNotice(
                        "warning",
                        f"{file.name} is vault-encrypted as a whole: not imported "
                        "(never decrypted); its variables are missing from this preview",
                        str(file),
                    )
                )
                continue
            file_values, file_sources = read_vars_file(text, str(file))
            values.update(file_values)
            sources.update(file_sources)
        if values:
            out[name] = (values, sources)
    return out


def _contains_vault(value: Any) -> bool:
    # iterative with a seen-set: YAML anchors can build self-referencing structures
    stack, seen = [value], set()
    while stack:
        item = stack.pop()
        if isinstance(item, VaultValue):
            return True
        if isinstance(item, Mapping | list | tuple) and id(item) not in seen:
            seen.add(id(item))
            stack.extend(item.values() if isinstance(item, Mapping) else item)
    return False


def read_ansible(
    path: Path,
    *,
    client: str | None = None,
    site: str | None = None,
    local_user: str | None = None,
) -> ParsedInventory:
    """Parse an Ansible inventory with its vars folders into placed hosts and notices."""
    inv = load_inventory(path)
    notices: list[ImportNotice] = []
    group_files = load_vars_dir(path.parent / "group_vars", list(inv.groups), notices)
    host_files = load_vars_dir(path.parent / "host_vars", list(inv.hosts), notices)
    hosts: list[ImportedHost] = []
    names: dict[str, str] = {}
    for name in inv.hosts:
        resolved = resolve_vars(inv, name, group_files, host_files)
        values, sources = resolved.values, resolved.sources
        for var, value in values.items():
            where = sources.get(var, "")
            if _contains_vault(value):
                notices.append(
                    ImportNotice(
                        "warning",
                        f"{var} is vault-encrypted: not imported (never decrypted)",
                        where,
                        name,
                    )
                )
            elif var in SECRET_VARS and value:
                notices.append(
                    ImportNotice(
                        "warning",
                        f"{var} holds a plaintext secret: not imported; store it with "
                        "`mssp cred add` (and remove it from the inventory)",
                        where,
                        name,
                    )
                )
        host = map_host(inv, name, values, sources, client, site, local_user, names, notices)
        if host is not None:
            hosts.append(host)
    if client and site:
        rule = f"every host goes to {client}/{site} (--client/--site)"
    elif client:
        rule = (
            f"every host goes to client {client} (--client); its top-level group becomes the "
            "site unless mssp_site is set"
        )
    else:
        rule = (
            "mssp_client/mssp_site vars win; otherwise top-level group -> client, its child "
            f"group -> site ({DEFAULT_SITE!r} if none); other groups -> tags"
        )
    return ParsedInventory("ansible", str(path), tuple(hosts), merge_notices(notices), rule, names)
