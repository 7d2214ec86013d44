"""OpenSSH client config import: Include, first-match-wins, wildcards, Match, broken files."""

from __future__ import annotations

from pathlib import Path

import pytest

from mssp.errors import InventoryError
from mssp.importers import read_inventory
from mssp.importers.plan import ImportedHost, ParsedInventory
from mssp.importers.ssh_config import read_ssh_config

FIXTURES = Path(__file__).parent / "fixtures"


def _read(path: Path, ssh_dir: Path | None = None, **kw: str) -> ParsedInventory:
    return read_ssh_config(
        path,
        client=kw.get("client", "acme"),
        site=kw.get("site", "main"),
        ssh_dir=ssh_dir or path.parent,
        local_user="consultant",
    )


def _hosts(parsed: ParsedInventory) -> dict[str, ImportedHost]:
    return {h.name: h for h in parsed.hosts}


@pytest.fixture(scope="module")
def consultant() -> ParsedInventory:
    return _read(FIXTURES / "ssh" / "config")


def test_concrete_aliases_are_hosts_and_wildcard_blocks_are_not(consultant) -> None:
    assert sorted(_hosts(consultant)) == [
        "bastion",
        "dc01",
        "fs01",
        "fs02",
        "web-legacy",
        "web-old",
    ]


def test_first_match_wins_across_includes(consultant) -> None:
    fs01 = _hosts(consultant)["fs01"]
    # Port from config.d/20-nested.conf (included first) beats "Port 22" under Host *
    assert fs01.port == 2022
    # HostName with %h, User from "Host fs01 fs02", not from "Host *.acme.lan" (the alias is
    # what Host patterns match) nor from "Host *"
    assert fs01.address == "fs01.acme.lan"
    assert fs01.username == "admin"
    assert fs01.options["proxy_jump"] == "bastion"
    assert fs01.source.endswith("config.d/20-nested.conf:1")


def test_host_star_at_the_bottom_supplies_defaults(consultant) -> None:
    hosts = _hosts(consultant)
    assert hosts["web-old"].username == "root"
    assert hosts["web-old"].port == 22
    assert hosts["bastion"].port == 2222 and hosts["bastion"].username == "jump"
    # IdentityFile accumulates like in OpenSSH: the block's own first, the default after
    assert hosts["bastion"].options["identity_file"] == "~/.ssh/id_ed25519_jump"
    assert hosts["bastion"].options["identity_files"] == "~/.ssh/id_ed25519_jump,~/.ssh/id_ed25519"


def test_key_equals_value_and_quotes(consultant) -> None:
    dc01 = _hosts(consultant)["dc01"]
    assert (dc01.address, dc01.port, dc01.username) == ("10.20.0.10", 2200, "domainadmin")


def test_negated_pattern_excludes_an_alias(consultant) -> None:
    hosts = _hosts(consultant)
    assert hosts["web-old"].address == "192.0.2.99"
    assert hosts["web-legacy"].address == "192.0.2.98"


def test_match_blocks_are_not_applied_and_the_preview_says_so(consultant) -> None:
    assert all(h.username != "officeuser" for h in consultant.hosts)
    match = [n for n in consultant.notices if "Match exec" in n.message]
    assert len(match) == 1 and match[0].level == "warning"
    assert match[0].source.endswith("ssh/config:25")


def test_proxycommand_is_never_imported(consultant) -> None:
    legacy = _hosts(consultant)["web-legacy"]
    assert not any("ssh -W" in v for v in legacy.options.values())
    notice = [n for n in consultant.notices if "ProxyCommand" in n.message]
    assert notice and notice[0].host == "web-legacy"


def test_include_glob_is_relative_to_ssh_dir_and_sorted(tmp_path: Path) -> None:
    ssh = tmp_path / "dot-ssh"
    (ssh / "conf.d").mkdir(parents=True)
    (ssh / "conf.d" / "b.conf").write_text("Host x\n  Port 2002\n")
    (ssh / "conf.d" / "a.conf").write_text("Host x\n  Port 2001\n")
    main = tmp_path / "elsewhere" / "config"
    main.parent.mkdir()
    main.write_text("Include conf.d/*.conf\nInclude missing/*.conf\n")
    parsed = _read(main, ssh_dir=ssh)
    assert _hosts(parsed)["x"].port == 2001
    assert any("matched no file" in n.message for n in parsed.notices)


def test_include_inside_a_host_block_is_conditional(tmp_path: Path) -> None:
    (tmp_path / "extra.conf").write_text("User fromextra\nHost inner\n  Port 2222\n")
    config = tmp_path / "config"
    config.write_text(
        "Host special\n  Include extra.conf\nHost other special\n  HostName 192.0.2.5\n"
    )
    hosts = _hosts(_read(config))
    assert hosts["special"].username == "fromextra"
    assert hosts["other"].username == "consultant"  # the local user, as OpenSSH does
    # "inner" is declared inside a block that only ever applies to "special": never a host
    assert "inner" not in hosts


def test_include_loop_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("Include config\n")
    with pytest.raises(InventoryError, match="nested deeper than 16"):
        _read(config)


def test_needs_client_and_site() -> None:
    with pytest.raises(InventoryError, match="give --client and --site"):
        read_ssh_config(FIXTURES / "ssh" / "config", client=None, site=None)


@pytest.mark.parametrize(
    ("name", "where", "message"),
    [
        ("bad-quote.sshconfig", ":4:", "No closing quotation"),
        ("bad-port.sshconfig", ":2:", "99999 is outside 1-65535"),
    ],
)
def test_broken_files_name_file_and_line(name: str, where: str, message: str) -> None:
    path = FIXTURES / "broken" / name
    with pytest.raises(InventoryError) as info:
        read_inventory(path, format="ssh-config", client="a", site="b")
    assert f"{path}{where}" in str(info.value) and message in str(info.value)


def test_binary_garbage_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_bytes(b"Host a\n\x00\xff\xfe")
    with pytest.raises(InventoryError, match="config:2"):
        _read(config)


def test_auto_detects_ssh_config(tmp_path: Path) -> None:
    config = tmp_path / "my-hosts"
    config.write_text("# comment\nHost a\n  HostName 192.0.2.1\n")
    parsed = read_inventory(config, client="acme", site="main", ssh_dir=tmp_path)
    assert parsed.format == "ssh-config" and parsed.hosts[0].address == "192.0.2.1"
