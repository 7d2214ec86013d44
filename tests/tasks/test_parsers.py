"""Parsers from captured outputs (fixture tables in tests/tasks/fixtures/): Linux and Windows."""

from __future__ import annotations

from pathlib import Path

import pytest

from mssp.errors import TaskError
from mssp.tasks.facts import parse_linux_facts
from mssp.tasks.parsers import linux as lx
from mssp.tasks.parsers import packages as pk
from mssp.tasks.parsers import services as sv
from mssp.tasks.parsers import split_sections
from mssp.tasks.parsers import windows as win

FIXTURES = Path(__file__).with_name("fixtures")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# file, family, id, version, kernel, cpus, pkg manager, reboot, login users (admin ones), disks
LINUX_FACTS = [
    ("debian12", "debian", "debian", "12", "6.1.0-26-amd64", 4, "apt", True,
     {"root": True, "admin": True, "jdoe": False}, ["/", "/srv/data share"]),
    ("ubuntu2204", "debian", "ubuntu", "22.04", "5.15.0-125-generic", 2, "apt", False,
     {"root": True, "ubuntu": True}, ["/", "/boot"]),
    ("ubuntu2404", "debian", "ubuntu", "24.04", "6.8.0-49-generic", 8, "apt", False,
     {"root": True, "ops": True}, ["/"]),
    ("rocky9", "redhat", "rocky", "9.4", "5.14.0-427.13.1.el9_4.x86_64", 16, "dnf", True,
     {"root": True, "rocky": True}, ["/", "/boot", "/var/lib/pgsql"]),
    ("alpine319", "alpine", "alpine", "3.19.4", "6.6.58-0-lts", 1, "apk", None,
     {"root": True, "netadmin": True}, ["/"]),
]  # fmt: skip


@pytest.mark.parametrize(
    "name,family,os_id,version,kernel,cpus,manager,reboot,users,mounts", LINUX_FACTS
)
def test_linux_facts_from_captures(
    name, family, os_id, version, kernel, cpus, manager, reboot, users, mounts
) -> None:
    facts = parse_linux_facts(fixture(f"facts/{name}.txt"))
    assert facts["os"]["family"] == family
    assert facts["os"]["id"] == os_id
    assert facts["os"]["version"] == version
    assert facts["kernel"]["release"] == kernel
    assert facts["cpu"]["count"] == cpus
    assert facts["package_manager"] == manager
    assert facts["reboot_required"] is reboot
    assert {u["name"]: u["admin"] for u in facts["users"]} == users
    assert [d["mount"] for d in facts["disks"]] == mounts
    assert 0 < facts["memory"]["used_percent"] < 100
    assert facts["uptime_seconds"] > 0


def test_debian_disk_figures_are_bytes() -> None:
    disks = parse_linux_facts(fixture("facts/debian12.txt"))["disks"]
    data = next(d for d in disks if d["mount"] == "/srv/data share")
    assert data["size"] == 515010816 * 1024 and data["used_percent"] == 83


def test_meminfo_without_memavailable_is_estimated() -> None:
    facts = parse_linux_facts(fixture("facts/alpine319.txt"))
    assert facts["memory"]["available"] == (301120 + 10240 + 90112) * 1024


def test_empty_output_is_a_task_error() -> None:
    with pytest.raises(TaskError):
        parse_linux_facts("bash: line 1: syntax error\n")


def test_a_smuggled_section_marker_cannot_replace_an_earlier_section() -> None:
    text = "@@mssp-section:a\nreal\n@@mssp-section:b\n@@mssp-section:a\nfake\n"
    assert split_sections(text) == {"a": "real", "b": ""}


def test_os_release_quoting() -> None:
    release = lx.parse_os_release('NAME=\'Weird "OS"\'\nID=weird\nVERSION_ID="1 2"\n# c\n')
    assert (release.name, release.id, release.version_id) == ('Weird "OS"', "weird", "1 2")


def test_shadow_states() -> None:
    locked = lx.parse_shadow("jdoe:!$y$j9T$abc:20000:0:99999:7::1:")
    assert locked and locked.password_locked and locked.has_password and locked.expired(20050)
    fresh = lx.parse_shadow("new:!:20000:0:99999:7:::")
    assert fresh and fresh.password_locked and not fresh.has_password and not fresh.expired(20050)
    assert lx.parse_shadow("garbage") is None


# fixture, parser, {name: (current, available, security)}
PACKAGE_CASES = [
    ("apt_simulate_debian12.txt", pk.parse_apt_simulate, {
        "libssl3": ("3.0.14-1~deb12u1", "3.0.15-1~deb12u1", True),
        "openssl": ("3.0.14-1~deb12u1", "3.0.15-1~deb12u1", True),
        "linux-image-6.1.0-27-amd64": ("", "6.1.115-1", True),
        "linux-image-amd64": ("6.1.112-1", "6.1.115-1", True),
        "tzdata": ("2024a-0+deb12u1", "2024b-0+deb12u1", False),
    }),
    ("apt_simulate_ubuntu2204.txt", pk.parse_apt_simulate, {
        "curl": ("7.81.0-1ubuntu1.18", "7.81.0-1ubuntu1.20", True),
        "libcurl4": ("7.81.0-1ubuntu1.18", "7.81.0-1ubuntu1.20", True),
        "python3-update-manager": ("1:22.04.20", "1:22.04.21", False),
        "update-manager-core": ("1:22.04.20", "1:22.04.21", False),
    }),
    ("apt_simulate_lab.txt", pk.parse_apt_simulate, {
        f"mssp-lab-tool-{x}": ("1.0", "1.1", False) for x in "abc"
    }),
    ("apt_simulate_none.txt", pk.parse_apt_simulate, {}),
    ("apt_list_ubuntu2404.txt", pk.parse_apt_list_upgradable, {
        "libnss-systemd": ("255.4-1ubuntu8.1", "255.4-1ubuntu8.4", False),
        "openssh-client": ("1:9.6p1-3ubuntu13.4", "1:9.6p1-3ubuntu13.5", True),
        "openssh-server": ("1:9.6p1-3ubuntu13.4", "1:9.6p1-3ubuntu13.5", True),
        "systemd": ("255.4-1ubuntu8.1", "255.4-1ubuntu8.4", False),
    }),
    ("zypper_list_updates_leap156.txt", pk.parse_zypper_list_updates, {
        "libopenssl3": ("3.1.4-150600.5.7.1", "3.1.4-150600.5.10.1", False),
        "vim": ("9.1.0330-150500.20.9.1", "9.1.0836-150500.20.15.1", False),
    }),
    ("apk_upgradable_alpine319.txt", pk.parse_apk_upgradable, {
        "busybox": ("1.36.1-r15", "1.36.1-r19", False),
        "libcrypto3": ("3.1.4-r5", "3.1.7-r1", False),
        "ssl_client": ("1.36.1-r15", "1.36.1-r19", False),
    }),
]  # fmt: skip


@pytest.mark.parametrize("name,parser,expected", PACKAGE_CASES)
def test_pending_updates_from_captures(name, parser, expected) -> None:
    updates = parser(fixture(f"packages/{name}"))
    assert {u.name: (u.current, u.available, u.security) for u in updates} == expected


def test_dnf_check_update_with_wrapped_lines_and_obsoletes() -> None:
    updates = pk.parse_dnf_check_update(fixture("packages/dnf_check_update_rocky9.txt"))
    assert [u.name for u in updates] == [
        "kernel", "kernel-core", "openssl", "openssl-libs",
        "python3-dnf-plugin-versionlock", "tzdata",
    ]  # fmt: skip
    assert updates[4].available == "4.3.0-16.el9" and updates[4].source == "appstream"
    assert updates[2].available == "1:3.0.7-28.el9_4"


def test_dnf_security_advisories_and_installed_versions() -> None:
    advisories = pk.parse_dnf_updateinfo(fixture("packages/dnf_updateinfo_rocky9.txt"))
    assert advisories == {
        "kernel": "RLSA-2024:8446",
        "kernel-core": "RLSA-2024:8446",
        "openssl": "RLSA-2024:6903",
        "openssl-libs": "RLSA-2024:6903",
    }
    versions = pk.parse_rpm_versions(fixture("packages/rpm_versions_rocky9.txt"))
    assert versions["tzdata"] == "2024a-1.el9" and versions["openssl"] == "1:3.0.7-27.el9"


@pytest.mark.parametrize(
    "nevra,expected",
    [
        ("openssl-1:3.0.7-29.el9_4.x86_64", ("openssl", "1:3.0.7-29.el9_4", "x86_64")),
        ("kernel-core-5.14.0-427.42.1.el9_4.x86_64",
         ("kernel-core", "5.14.0-427.42.1.el9_4", "x86_64")),
        ("tzdata-2024b-2.el9.noarch", ("tzdata", "2024b-2.el9", "noarch")),
    ],
)  # fmt: skip
def test_split_nevra(nevra, expected) -> None:
    assert pk.split_nevra(nevra) == expected


def test_dpkg_versions_only_installed() -> None:
    text = "mssp-lab-tool-a 1.1 ii \nold-thing 2.0 rc \n"
    assert pk.parse_dpkg_versions(text) == {"mssp-lab-tool-a": "1.1"}


# ----------------------------------------------------------------------------- Windows ----

WINDOWS_FACTS = [
    ("ws2022_facts.json", "Microsoft Windows Server 2022 Standard", "21H2", "20348.2849", 2,
     {"Administrator": True, "itadmin": True, "jdoe": False, "Guest": False}, False),
    ("ws2019_facts.json", "Microsoft Windows Server 2019 Datacenter", "10.0.17763", "17763.6532", 1,
     {"Administrator": True}, True),
]  # fmt: skip


@pytest.mark.parametrize("name,caption,version,build,disks,admins,reboot", WINDOWS_FACTS)
def test_windows_facts_from_captures(name, caption, version, build, disks, admins, reboot) -> None:
    facts = win.parse_facts(fixture(f"windows/{name}"))
    assert facts["os"]["family"] == "windows"
    assert facts["os"]["name"] == caption
    assert facts["os"]["version"] == version
    assert facts["os"]["build"] == build
    assert len(facts["disks"]) == disks
    for user, admin in admins.items():
        assert next(u for u in facts["users"] if u["name"] == user)["admin"] is admin
    assert facts["reboot_required"] is reboot
    assert facts["last_boot"].startswith("20")


def test_windows_update_search_separates_security() -> None:
    search = win.parse_wu_search(fixture("windows/wu_search_ws2022.json"))
    assert [(u.label, u.security) for u in search.updates] == [
        ("KB5046616", True),
        ("KB5046540", False),
        ("KB2267602", False),
    ]
    assert not search.reboot_required


def test_windows_powershell51_single_element_quirks() -> None:
    search = win.parse_wu_search(fixture("windows/wu_search_ws2019_single.json"))
    assert len(search.updates) == 1 and search.updates[0].kb == ("5046615",)
    assert search.updates[0].security and search.reboot_required
    assert win.parse_wu_search(fixture("windows/wu_search_none.json")).updates == ()


def test_windows_update_install_results() -> None:
    outcome = win.parse_wu_install(fixture("windows/wu_install_ws2022.json"))
    assert outcome.result == "succeeded with errors" and outcome.reboot_required
    ok, bad = outcome.updates
    assert ok.succeeded and ok.kb == ("5046616",)
    assert not bad.succeeded and bad.result == "failed" and bad.hresult & 0xFFFFFFFF == 0x80240017


def test_hotfixes_and_users_and_services() -> None:
    assert win.parse_hotfixes(fixture("windows/hotfixes_ws2022.json"))["KB5012170"] == ""
    present = win.parse_user_state(fixture("windows/user_state_present.json"))
    assert present.exists and present.enabled and "Remote Desktop Users" in present.groups
    absent = win.parse_user_state(fixture("windows/user_state_absent.json"))
    assert not absent.exists
    german = win.parse_user_state(fixture("windows/user_state_disabled_single_group.json"))
    assert german.groups == ("Users",) and german.administrators_group == "Administratoren"
    spooler = win.parse_service(fixture("windows/service_spooler.json"))
    assert spooler.exists and spooler.status == "Running"


def test_windows_garbage_is_a_task_error() -> None:
    with pytest.raises(TaskError, match="unexpected reply"):
        win.parse_wu_search("Exception calling Search ...")


SYSTEMCTL_SHOW = (
    "LoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\nMainPID=712\n"
)


def test_service_parsers() -> None:
    ssh = sv.parse_systemctl_show("ssh", SYSTEMCTL_SHOW)
    assert ssh.exists and ssh.active and ssh.state == "active/running" and ssh.main_pid == 712
    gone = sv.parse_systemctl_show("nope", "LoadState=not-found\nActiveState=inactive\n")
    assert not gone.exists and not gone.active
    assert sv.parse_init_status("cron", "sysv", 3, True).state == "stopped"
    assert not sv.parse_init_status("cron", "sysv", 0, False).exists
