"""CSV import: header-driven columns, slugs, defaults, and broken rows named by line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mssp.errors import InventoryError
from mssp.importers import read_inventory
from mssp.importers.csv_import import read_csv

FIXTURES = Path(__file__).parent / "fixtures"


def test_csv_rows_become_placed_hosts() -> None:
    parsed = read_inventory(FIXTURES / "clients.csv")
    assert parsed.format == "csv"
    hosts = {h.full_name: h for h in parsed.hosts}
    assert sorted(hosts) == [
        "acme-dental/main-office/dc01",
        "acme-dental/main-office/fs01",
        "bravo-law/hq/nas01",
    ]
    fs01 = hosts["acme-dental/main-office/fs01"]
    assert (fs01.address, fs01.port, fs01.username, fs01.tags) == (
        "192.0.2.10",
        22,
        "admin",
        {"fileserver", "backup"},
    )
    dc01 = hosts["acme-dental/main-office/dc01"]
    assert (dc01.transport, dc01.port, dc01.username) == ("winrm", 5986, "ACME\\admin")
    assert dc01.tags == {"dc", "windows"} and dc01.options == {"scheme": "https"}
    assert hosts["bravo-law/hq/nas01"].username == "root"
    assert parsed.display_names["acme-dental"] == "Acme Dental"
    assert fs01.source.endswith("clients.csv:2")


def test_columns_in_any_order_with_flags_and_bom(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("\ufeffAddress,Name,Tags\n192.0.2.1,a,web|linux\n\n192.0.2.2,b,\n", "utf-8")
    parsed = read_csv(f, client="acme", site="main")
    assert [(h.full_name, h.address) for h in parsed.hosts] == [
        ("acme/main/a", "192.0.2.1"),
        ("acme/main/b", "192.0.2.2"),
    ]
    assert parsed.hosts[0].tags == {"web", "linux"}


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "client,site,name,address,port\nacme,main,a,192.0.2.1,22\nacme,main,b,192.0.2.2,http\n",
            3,
            "'http' is not a port number",
        ),
        ("client,site,name,adress\n", 1, "unknown column(s) 'adress'"),
        ("client,site,name\n", 1, "missing column 'address'"),
        ("name,address\n", 1, "missing column 'client' (or pass --client)"),
        ("client,site,name,address\nacme,main,a\n", 2, "3 cells, but the header has 4"),
        ("client,site,name,address,transport\nacme,main,a,192.0.2.1,telnet\n", 2, "telnet"),
        ("client,site,name,address\nacme,main,,192.0.2.1\n", 2, "empty 'name' cell"),
        ('client,site,name,address\nacme,main,a,"192.0.2.1\n', 2, "bad CSV"),
        ("client,name,name,address\n", 1, "given twice"),
        ("", 1, "empty file"),
    ],
)
def test_broken_csv_names_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    f = tmp_path / "broken.csv"
    f.write_text(text)
    with pytest.raises(InventoryError) as info:
        read_csv(f)
    assert str(info.value).startswith(f"{f}:{line}: ")
    assert message in str(info.value)


def test_broken_fixture_files() -> None:
    with pytest.raises(InventoryError, match=r"bad-port\.csv:3: "):
        read_inventory(FIXTURES / "broken" / "bad-port.csv")
    with pytest.raises(InventoryError, match=r"unknown-column\.csv:1: "):
        read_inventory(FIXTURES / "broken" / "unknown-column.csv")


def test_not_utf8_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "latin1.csv"
    f.write_bytes("client,site,name,address\nacme,main,caf\xe9,192.0.2.1\n".encode("latin-1"))
    with pytest.raises(InventoryError, match=r"latin1\.csv:2: not UTF-8"):
        read_csv(f)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("clients.txt", "client,site,name,address\nacme,main,a,192.0.2.1\n", "csv"),
        ("inventory", "# acme\nacme:\n  hosts:\n    a:\n", "ansible"),
        ("hosts", "; comment\n[web]\na\n", "ansible"),
        ("myconfig", "Host a\n  HostName 192.0.2.1\n", "ssh-config"),
        ("x.yaml", "whatever", "ansible"),
    ],
)
def test_format_detection(tmp_path: Path, name: str, text: str, expected: str) -> None:
    from mssp.importers import detect_format

    f = tmp_path / name
    f.write_text(text)
    assert detect_format(f) == expected


def test_undetectable_format_asks_for_format(tmp_path: Path) -> None:
    f = tmp_path / "notes"
    f.write_text("just some words\n")
    with pytest.raises(InventoryError, match="pass --format"):
        read_inventory(f)


def _plan(f: Path):
    from mssp.importers.plan import ExistingInventory, make_plan

    return make_plan(read_csv(f), ExistingInventory())


def test_names_and_tags_are_normalised_like_mssp_host_add(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("client,site,name,address,tags\nAcme,Main,NAS01,[2001:db8::5],_Web;Backup\n")
    host = next(c.host for c in _plan(f).changes if c.kind == "host")
    assert host is not None
    assert (host.full_name, host.address) == ("acme/main/nas01", "2001:db8::5")
    assert host.tags == {"web", "backup"}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("acme,main,a,-oProxyCommand=x,root", "invalid address"),
        ("acme,main,a,192.0.2.1,domain admin", "invalid user name"),
        ("acme,main,a b,192.0.2.1,root", "invalid host name"),
    ],
)
def test_values_mssp_would_refuse_are_refused_with_the_line(
    tmp_path: Path, row: str, message: str
) -> None:
    f = tmp_path / "x.csv"
    f.write_text(f"client,site,name,address,user\nacme,main,ok,192.0.2.9,root\n{row}\n")
    with pytest.raises(InventoryError) as info:
        _plan(f)
    assert str(info.value).startswith(f"{f}:3: ") and message in str(info.value)


def test_case_variants_of_one_host_are_a_duplicate(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("client,site,name,address\nacme,main,NAS01,192.0.2.1\nacme,main,nas01,192.0.2.2\n")
    with pytest.raises(InventoryError, match=r"x\.csv:3: host acme/main/nas01 is defined twice"):
        _plan(f)
