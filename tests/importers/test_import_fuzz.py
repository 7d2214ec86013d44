"""Hostile inventory files: any text gives hosts or an InventoryError, never another exception."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mssp.errors import InventoryError
from mssp.importers import read_inventory
from mssp.importers.plan import ExistingInventory, make_plan

_PIECES = {
    "ini": [
        "[web]",
        "[web:children]",
        "[web:vars]",
        "[all:vars]",
        "h[1:3]",
        "h[a:",
        "a=1",
        "ansible_port=x",
        "ansible_connection=winrm",
        "h:22",
        " ",
        "\n",
        "#",
        "'",
        "=",
        "db",
        ":",
        "[",
        "]",
    ],
    "yml": [
        "all:",
        "\n",
        "  ",
        "hosts:",
        "children:",
        "vars:",
        "h1:",
        "!vault |",
        "- x",
        "ansible_port: 99999",
        "{",
        "}",
        "[",
        "]",
        ":",
        "'",
        "&a",
        "*a",
        "mssp_client: C",
    ],
    "ssh": [
        "Host ",
        "Match ",
        "Include ",
        "HostName ",
        "Port ",
        "User ",
        "*",
        "!",
        "a",
        "\n",
        "=",
        '"',
        " ",
        "22",
        "ProxyJump ",
        "x.conf",
        "/etc/passwd",
    ],
    "csv": [
        "client,site,name,address,port",
        "\n",
        ",",
        "acme",
        "main",
        "h1",
        "192.0.2.1",
        '"',
        "22",
        "http",
        "tags",
        ";",
    ],
}
_SUFFIX = {"ini": ".ini", "yml": ".yml", "ssh": ".sshconfig", "csv": ".csv"}
_FORMAT = {"ini": "ansible", "yml": "ansible", "ssh": "ssh-config", "csv": "csv"}


def _text(kind: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.lists(st.sampled_from(_PIECES[kind]), max_size=30).map("".join),
        st.text(max_size=200),
    )


def _check(kind: str, text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"inventory{_SUFFIX[kind]}"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            parsed = read_inventory(
                path, format=_FORMAT[kind], client="acme", site="main", ssh_dir=Path(tmp)
            )
            make_plan(parsed, ExistingInventory())
        except InventoryError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(_PIECES)), st.data())
def test_any_file_gives_hosts_or_an_inventory_error(kind: str, data: st.DataObject) -> None:
    _check(kind, data.draw(_text(kind)))


def test_self_referencing_yaml_anchor_is_harmless(tmp_path: Path) -> None:
    inv = tmp_path / "inventory.yml"
    inv.write_text("acme:\n  vars:\n    x: &a [*a]\n    mssp_tags: &b [*b]\n  hosts:\n    h1:\n")
    parsed = read_inventory(inv)
    assert [h.full_name for h in parsed.hosts] == ["acme/main/h1"]
    assert parsed.hosts[0].tags == frozenset()


def test_alias_bomb_in_a_connection_variable_is_refused_quickly(tmp_path: Path) -> None:
    lines = ["acme:", "  vars:", "    l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    lines += ["  hosts:", "    h1:", "      ansible_host: *l8"]
    inv = tmp_path / "inventory.yml"
    inv.write_text("\n".join(lines) + "\n")
    with pytest.raises(InventoryError, match="ansible_host of h1 must be a single value"):
        read_inventory(inv)
