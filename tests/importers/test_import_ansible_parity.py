"""The own Ansible reader agrees with ansible-inventory on hosts and merged variables.

Needs ansible-core (a dev dependency): a missing `ansible-inventory` fails, never skips.
Whole-file vault-encrypted vars files are left out of the copy given to ansible-inventory,
which would otherwise ask for the vault password (mssp only flags them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mssp.importers.ansible import load_inventory, load_vars_dir
from mssp.importers.ansible_model import VaultValue, resolve_vars

FIXTURES = Path(__file__).parent / "fixtures"
ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"
# added by ansible-inventory itself, not by the inventory
MAGIC = {"inventory_file", "inventory_dir", "ansible_facts"}


def _ansible_list(path: Path, home: Path) -> dict[str, Any]:
    exe = ANSIBLE_INVENTORY if ANSIBLE_INVENTORY.exists() else shutil.which("ansible-inventory")
    assert exe, "ansible-inventory not found: install ansible-core (dev dependency)"
    env = {**os.environ, "ANSIBLE_HOME": str(home), "ANSIBLE_LOCAL_TEMP": str(home / "tmp")}
    env.pop("ANSIBLE_CONFIG", None)
    out = subprocess.run(
        [str(exe), "-i", str(path), "--list"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=path.parent,
        check=True,
    )
    return json.loads(out.stdout)


def _normal(value: Any) -> Any:
    if isinstance(value, VaultValue):
        return "<vault>"
    if isinstance(value, dict):
        if set(value) == {"__ansible_vault"}:
            return "<vault>"
        return {str(k): _normal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    return value


def _own(path: Path) -> dict[str, dict[str, Any]]:
    inv = load_inventory(path)
    gf = load_vars_dir(path.parent / "group_vars", list(inv.groups), [])
    hf = load_vars_dir(path.parent / "host_vars", list(inv.hosts), [])
    return {h: _normal(resolve_vars(inv, h, gf, hf).values) for h in inv.hosts}


@pytest.mark.parametrize(
    "inventory", ["ansible_ini/hosts.ini", "ansible_yaml/inventory.yml", "ansible_edge/hosts"]
)
def test_same_hosts_and_vars_as_ansible_inventory(tmp_path: Path, inventory: str) -> None:
    folder, name = inventory.split("/")
    copy = tmp_path / folder
    shutil.copytree(FIXTURES / folder, copy)
    for vars_file in copy.rglob("*"):
        if vars_file.is_file() and vars_file.read_text().startswith("$ANSIBLE_VAULT;"):
            vars_file.unlink()
    theirs = _ansible_list(copy / name, tmp_path)
    their_vars = {
        h: {k: v for k, v in _normal(hv).items() if k not in MAGIC}
        for h, hv in theirs["_meta"]["hostvars"].items()
    }
    their_hosts = set()
    for group, body in theirs.items():
        if group != "_meta":
            their_hosts |= set(body.get("hosts", []))
    mine = _own(copy / name)
    assert set(mine) == their_hosts
    for host in their_hosts:
        assert mine[host] == their_vars.get(host, {}), host
    # group membership (children) agrees too
    inv = load_inventory(copy / name)
    for group, body in theirs.items():
        if group in ("_meta", "all"):
            continue
        assert set(body.get("children", [])) == set(inv.groups[group].children), group
        assert set(body.get("hosts", [])) == set(inv.groups[group].hosts), group
