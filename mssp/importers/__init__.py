"""Inventory importers: read a file (OpenSSH config, Ansible INI/YAML, CSV) into an import plan.

``read_inventory`` picks the reader (``--format auto`` sniffs the file), ``plan.make_plan``
compares with the database, ``apply.apply_plan`` writes all-or-nothing in one transaction.
"""

from __future__ import annotations

import re
from pathlib import Path

from mssp.errors import InventoryError
from mssp.importers.plan import ParsedInventory

FORMATS = ("auto", "ssh-config", "ansible", "csv")
_YAML_GROUP = re.compile(r"^[\w.-]+:\s*(#.*)?$")
_SSH_KEYWORD = re.compile(r"^\s*(host|match|include|hostname|user|port|identityfile)\b", re.I)


def detect_format(path: Path) -> str:
    """Guess the format from the name, then from the first meaningful line."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".yml", ".yaml", ".json", ".ini"):
        return "ansible"
    if path.name == "config" and path.parent.name == ".ssh":
        return "ssh-config"
    try:
        head = path.read_bytes()[:65536].decode("utf-8", "replace")
    except OSError as exc:
        raise InventoryError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None
    for line in head.splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("["):
            return "ansible"
        if _SSH_KEYWORD.match(stripped):
            return "ssh-config"
        if "," in stripped and {"name", "address"} <= {
            c.strip().lower() for c in stripped.split(",")
        }:
            return "csv"
        if stripped == "---" or _YAML_GROUP.match(stripped):
            return "ansible"
        break
    raise InventoryError(
        "cannot tell the format: pass --format ssh-config, ansible or csv", path=str(path)
    )


def read_inventory(
    path: Path,
    *,
    format: str = "auto",
    client: str | None = None,
    site: str | None = None,
    ssh_dir: Path | None = None,
) -> ParsedInventory:
    """Read ``path`` in the given format (or the detected one). InventoryError on a bad file."""
    if format not in FORMATS:
        raise InventoryError(f"unknown format {format!r} (one of {', '.join(FORMATS)})")
    if not path.exists():
        raise InventoryError("no such file", path=str(path))
    kind = detect_format(path) if format == "auto" else format
    if kind == "ssh-config":
        from mssp.importers.ssh_config import read_ssh_config

        return read_ssh_config(path, client=client, site=site, ssh_dir=ssh_dir)
    if kind == "ansible":
        from mssp.importers.ansible import read_ansible

        return read_ansible(path, client=client, site=site)
    from mssp.importers.csv_import import read_csv

    return read_csv(path, client=client, site=site)
