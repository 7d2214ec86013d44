"""Ansible inventory import: INI and YAML, ranges, precedence, winrm, vault, placement, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mssp.errors import InventoryError
from mssp.importers import read_inventory
from mssp.importers.ansible import load_inventory, load_vars_dir, read_ansible
from mssp.importers.ansible_model import expand_host_pattern, resolve_vars
from mssp.importers.plan import ExistingInventory, ImportedHost, ParsedInventory, make_plan

FIXTURES = Path(__file__).parent / "fixtures"
INI = FIXTURES / "ansible_ini" / "hosts.ini"
YAML = FIXTURES / "ansible_yaml" / "inventory.yml"


def _hosts(parsed: ParsedInventory) -> dict[str, ImportedHost]:
    return {h.name: h for h in parsed.hosts}


def _vars(path: Path) -> dict[str, dict]:
    inv = load_inventory(path)
    group_files = {
        k: (v[0], v[1])
        for k, v in load_vars_dir(path.parent / "group_vars", list(inv.groups), []).items()
    }
    host_files = load_vars_dir(path.parent / "host_vars", list(inv.hosts), [])
    return {h: resolve_vars(inv, h, group_files, host_files).values for h in inv.hosts}


@pytest.fixture(scope="module")
def ini() -> ParsedInventory:
    return read_ansible(INI, local_user="consultant")


@pytest.fixture(scope="module")
def yml() -> ParsedInventory:
    return read_ansible(YAML, local_user="consultant")


# ranges --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("web[01:03]", ["web01", "web02", "web03"]),
        ("web[8:10].lan", ["web8.lan", "web9.lan", "web10.lan"]),
        ("db-[a:c]", ["db-a", "db-b", "db-c"]),
        ("x[1:9:4]", ["x1", "x5", "x9"]),
        ("r[1:2]-n[a:b]", ["r1-na", "r1-nb", "r2-na", "r2-nb"]),
        ("[:2]x", ["0x", "1x", "2x"]),
        ("plain", ["plain"]),
    ],
)
def test_host_ranges_expand_like_ansible(pattern: str, expected: list[str]) -> None:
    assert expand_host_pattern(pattern, path="f", line=1) == expected


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("web[01:1x]", "not numeric"),
        ("web[01:100]", "equal-length"),
        ("web[1]", "begin:end"),
        ("web[c:a]", "begin <= end"),
        ("web[1:3:0]", "positive"),
        ("web[1:", "unbalanced"),
        ("web[1:", "unbalanced"),
        ("h[0:999999999]", "too large"),
        ("h[0:9999]-[0:9999]", "more than 10000 hosts"),
    ],
)
def test_bad_ranges(pattern: str, message: str) -> None:
    with pytest.raises(InventoryError, match=message):
        expand_host_pattern(pattern, path="f", line=7)


# INI -----------------------------------------------------------------------------------------


def test_ini_hosts_with_ranges_and_nested_children(ini: ParsedInventory) -> None:
    hosts = _hosts(ini)
    assert sorted(hosts) == [
        "acme-dca",
        "acme-dcb",
        "acme-fs01",
        "acme-old",
        "acme-web01.acme.lan",
        "acme-web02.acme.lan",
        "acme-web03.acme.lan",
        "bravo-nas",
    ]
    web = hosts["acme-web02.acme.lan"]
    assert (web.client, web.site) == ("acme-dental", "acme-office")
    assert web.tags == {"webservers"}  # a role group, not a client: becomes a tag
    assert web.placement == "group acme_dental + group acme_office"
    assert hosts["acme-dca"].site == "acme-dc"
    assert (hosts["bravo-nas"].site, hosts["bravo-nas"].port) == ("main", 2222)
    assert hosts["bravo-nas"].address == "203.0.113.20"


def test_local_connection_is_skipped_with_a_warning(ini: ParsedInventory) -> None:
    assert "localhost" not in _hosts(ini)
    assert any("ansible_connection=local" in n.message for n in ini.notices)


def test_precedence_all_parent_child_group_vars_files_and_host() -> None:
    hv = _vars(INI)
    # inventory file: [all:vars] < parent [acme_dental:vars] < child group
    assert hv["acme-web01.acme.lan"]["ntp_server"] == "ntp.acme.lan"
    assert hv["bravo-nas"]["ntp_server"] == "pool.ntp.org"
    # group_vars files beat inventory-file group vars, even group_vars/all (Ansible's order),
    # and a deeper group's file beats its parent's; a directory of files merges in order
    assert hv["bravo-nas"]["from_level"] == "group_vars_all"
    assert hv["acme-dca"]["from_level"] == "group_vars_acme_dental"
    assert hv["acme-web01.acme.lan"]["from_level"] == "group_vars_acme_office_yml"
    assert hv["acme-dca"]["monitoring"] is True
    # host_vars/ beats everything
    assert hv["acme-fs01"]["from_level"] == "host_vars"
    # INI values are Python literals, as in Ansible
    assert hv["acme-web01.acme.lan"]["http_port"] == 8080


def test_same_depth_groups_merge_alphabetically_and_priority_wins(tmp_path: Path) -> None:
    inv = tmp_path / "hosts"
    inv.write_text("[zeta]\nh1\n[alpha]\nh1\n[zeta:vars]\nx=zeta\n[alpha:vars]\nx=alpha\n")
    assert _vars(inv)["h1"]["x"] == "zeta"  # alpha first, zeta later wins
    inv.write_text(inv.read_text() + "ansible_group_priority=10\n")
    assert _vars(inv)["h1"]["x"] == "alpha"


def test_legacy_ansible_ssh_names(ini: ParsedInventory) -> None:
    old = _hosts(ini)["acme-old"]
    # ansible_ssh_user beats ansible_user from the group, as in Ansible's ssh plugin
    assert (old.address, old.port, old.username) == ("10.10.0.9", 2202, "legacy")


def test_winrm_hosts_and_their_options(ini: ParsedInventory, yml: ParsedInventory) -> None:
    dc = _hosts(ini)["acme-dca"]
    assert dc.transport == "winrm" and dc.port == 5986
    assert dc.username == "ACME\\svc-mssp"
    assert dict(dc.options) == {"scheme": "https", "auth": "ntlm"}
    pc = _hosts(yml)["north-pc2"]
    assert (pc.transport, pc.port, dict(pc.options)) == (
        "winrm",
        5985,
        {"scheme": "http", "auth": "basic"},
    )
    assert any("Basic auth over plain HTTP" in n.message for n in yml.notices)


def test_winrm_cert_validation_ignore_is_refused(tmp_path: Path) -> None:
    inv = tmp_path / "hosts"
    inv.write_text(
        "[c]\nw1 ansible_connection=winrm ansible_winrm_server_cert_validation=ignore "
        "ansible_winrm_transport=kerberos ansible_winrm_ca_trust_path=/etc/ca.pem\n"
    )
    parsed = read_ansible(inv)
    w1 = parsed.hosts[0]
    assert dict(w1.options) == {"scheme": "https", "ca_file": "/etc/ca.pem"}
    messages = " ".join(n.message for n in parsed.notices)
    assert "server_cert_validation=ignore is not imported" in messages
    assert "kerberos is not supported" in messages


def test_vault_values_are_flagged_never_decrypted(
    ini: ParsedInventory, yml: ParsedInventory
) -> None:
    ini_msgs = {(n.message, Path(n.source.split(":")[0]).name) for n in ini.notices}
    assert (
        "ansible_password is vault-encrypted: not imported (never decrypted)",
        "10-main.yml",
    ) in ini_msgs
    whole = [n for n in ini.notices if "vault-encrypted as a whole" in n.message]
    assert whole and whole[0].source.endswith("bravo_law.yml")
    assert any("ansible_ssh_pass is vault-encrypted" in n.message for n in yml.notices)
    dump = json.dumps(make_plan(ini, ExistingInventory()).to_dict())
    dump += json.dumps(make_plan(yml, ExistingInventory()).to_dict())
    assert "ANSIBLE_VAULT" not in dump and "6231336539" not in dump


def test_plaintext_passwords_are_flagged_and_never_shown(yml: ParsedInventory) -> None:
    plan = make_plan(yml, ExistingInventory())
    text = "\n".join(plan.render()) + json.dumps(plan.to_dict())
    assert "ansible_become_password holds a plaintext secret" in text
    assert "hunter2" not in text


# YAML ----------------------------------------------------------------------------------------


def test_yaml_inventory_vars_and_placement(yml: ParsedInventory) -> None:
    hosts = _hosts(yml)
    assert sorted(hosts) == ["north-pc1", "north-pc2", "north-pc3", "south-srv01", "south-srv02"]
    assert hosts["north-pc1"].full_name == "charlie-clinic/north/north-pc1"
    assert hosts["north-pc1"].placement == "mssp_client var + mssp_site var"
    srv2 = hosts["south-srv02"]
    assert (srv2.address, srv2.port, srv2.username) == ("10.30.1.11", 2022, "ops")
    assert "linux" in srv2.tags
    assert hosts["south-srv01"].options["identity_file"] == "~/.ssh/charlie"
    assert _vars(YAML)["south-srv01"]["role_var"] == "linux-from-file"
    assert hosts["north-pc1"].source.endswith("inventory.yml:11")


# placement rules -----------------------------------------------------------------------------


def test_client_and_site_flags_put_everything_there() -> None:
    parsed = read_ansible(INI, client="acme", site="office")
    assert {(h.client, h.site) for h in parsed.hosts} == {("acme", "office")}
    assert "--client/--site" in parsed.rule


def test_client_flag_alone_makes_top_level_groups_sites() -> None:
    parsed = read_ansible(INI, client="acme")
    assert {h.site for h in parsed.hosts} == {"acme-dental", "bravo-law"}
    assert {h.client for h in parsed.hosts} == {"acme"}


def test_ambiguous_client_is_an_error_naming_host_and_fix(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.ini"
    inv.write_text("[a]\nh1\n[b]\nh1\n")
    with pytest.raises(InventoryError) as info:
        read_ansible(inv)
    assert f"{inv}:2" in str(info.value)
    assert "a, b" in str(info.value) and "mssp_client" in str(info.value)


def test_ungrouped_hosts_need_a_client(tmp_path: Path) -> None:
    inv = tmp_path / "hosts"
    inv.write_text("lonely ansible_host=192.0.2.1\n")
    with pytest.raises(InventoryError, match="cannot tell its client"):
        read_ansible(inv)
    assert read_ansible(inv, client="acme", site="main").hosts[0].full_name == "acme/main/lonely"


# broken files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "line", "message"),
    [
        ("bad-range.ini", 3, "host range [01:1x]"),
        ("bad-children.ini", 3, "'missing_group', which has no section"),
        ("bad-indent.yml", 6, "YAML:"),
        ("loop.ini", 4, "loop of children"),
    ],
)
def test_broken_inventories_name_file_and_line(name: str, line: int, message: str) -> None:
    path = FIXTURES / "broken" / name
    with pytest.raises(InventoryError) as info:
        read_inventory(path, format="ansible")
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("[web:hosts2]\nh1\n", 1, "unknown type"),
        ("[web]\nh1\n[web:vars]\njust-a-word\n", 4, "expected key=value"),
        ("[web]\nh1 oops\n", 2, "expected key=value after the host name"),
        ("[web]\nh1 a='unclosed\n", 2, "bad host line"),
        ("[web ]\n", 1, "invalid section"),
        ("[x:vars]\na=1\n", 1, "never defined"),
        ("[web]\nh1 ansible_port=http\n", 2, "not a port number"),
        ("[web]\n---\n", 2, "YAML file"),
    ],
)
def test_broken_ini_lines(tmp_path: Path, text: str, line: int, message: str) -> None:
    inv = tmp_path / "hosts"
    inv.write_text(text)
    with pytest.raises(InventoryError) as info:
        read_ansible(inv, client="c", site="s")
    assert str(info.value).startswith(f"{inv}:{line}: ") and message in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty YAML inventory"),
        ("- a\n- b\n", "mapping of groups"),
        ("plugin: aws_ec2\n", "plugin configuration"),
        ("all:\n  hostz:\n    a:\n", "unexpected key 'hostz'"),
        ("all:\n  hosts:\n    1234:\n", "must be text"),
        ("all: !!python/object/apply:os.system ['true']\n", "YAML:"),
    ],
)
def test_broken_yaml(tmp_path: Path, text: str, message: str) -> None:
    inv = tmp_path / "inventory.yml"
    inv.write_text(text)
    with pytest.raises(InventoryError, match=message):
        read_ansible(inv, client="c", site="s")


def test_whole_inventory_vault_encrypted_is_refused(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text("$ANSIBLE_VAULT;1.1;AES256\n3132\n")
    with pytest.raises(InventoryError, match="never decrypts"):
        read_ansible(inv)


def test_broken_group_vars_file_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "web.yml").write_text("a: 1\nb: [unclosed\n")
    inv = tmp_path / "hosts"
    inv.write_text("[web]\nh1\n")
    with pytest.raises(InventoryError) as info:
        read_ansible(inv)
    assert "group_vars/web.yml:" in str(info.value)


def test_jinja_templates_are_not_evaluated_and_are_flagged(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text(
        "acme:\n  hosts:\n    web1:\n"
        '      ansible_host: "{{ inventory_hostname }}.acme.lan"\n'
        '      ansible_port: "{{ web_port }}"\n'
        "      ansible_user: \"{{ lookup('env', 'USER') }}\"\n"
    )
    parsed = read_ansible(inv, local_user="consultant")
    web1 = parsed.hosts[0]
    assert (web1.address, web1.port, web1.username) == ("web1", 22, "consultant")
    flagged = [n for n in parsed.notices if "Jinja template" in n.message]
    assert len(flagged) == 3 and all(n.host == "web1" for n in flagged)
    assert flagged[0].source == f"{inv}:4"


def test_file_without_extension_is_read_as_yaml_or_ini_like_ansible(tmp_path: Path) -> None:
    as_yaml = tmp_path / "inventory"
    as_yaml.write_text("acme:\n  hosts:\n    web1:\n      ansible_port: 2222\n")
    assert read_ansible(as_yaml).hosts[0].port == 2222
    as_ini = tmp_path / "hosts"
    as_ini.write_text("[acme]\nweb1:2222\nweb2 ansible_host=192.0.2.2\n")
    assert [h.port for h in read_ansible(as_ini).hosts] == [2222, 22]


@pytest.mark.parametrize(
    "text",
    ["[web]\nh1 ansible_password= hunter2-secret\n", "[web:vars]\npassword: hunter2-secret\n"],
)
def test_errors_never_echo_what_may_be_a_secret(tmp_path: Path, text: str) -> None:
    inv = tmp_path / "hosts"
    inv.write_text("[web]\nh0\n" + text)
    with pytest.raises(InventoryError) as info:
        read_ansible(inv, client="c", site="s")
    assert "hunter2" not in str(info.value) and f"{inv}:4" in str(info.value)
