"""Parsers of what a managed host prints give a result or their documented error, nothing else.

Tasks read facts, package lists, services and backup state by running a command and parsing its
output with a pure parser (mssp.tasks.parsers, mssp.backups.restic). A compromised host controls
that output. Fuzzed with random text, with text built from the tokens those formats use, and with
arbitrary JSON, each parser must return or raise its documented error: TaskError for task parsers,
ValueError for the restic parsers (plus what the caller of parse_snapshots catches). Anything else
would surface as "internal error in task" instead of a clear message. Parsers not listed here are
in docs/security.md §3 (they fail this fuzz today).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mssp.backups import restic
from mssp.errors import TaskError
from mssp.tasks.parsers import linux, packages, services, split_sections, windows

TOKENS = st.sampled_from(
    [
        *"\n \t:=\"'[]{},/-.%@",
        "0",
        "1",
        "-1",
        "99999999999999999999",
        "1e999",
        "nan",
        "x",
        "é",
        "\x00",
        "\x1b]0;t\x07",
        "\ufeff",
        "\r\n",
        "ID=debian",
        "NAME=",
        "MemTotal:",
        "kB",
        "Filesystem",
        "Inst ",
        "Conf ",
        "/",
        "[upgradable from: ",
        "security",
        "Active",
        "ActiveState=",
        "LoadState=",
        "KB",
        "null",
        "true",
        '"id":',
        "T12:00:00Z",
    ]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=10,
).map(json.dumps)
HOST_TEXT = st.one_of(st.text(max_size=300), st.lists(TOKENS, max_size=60).map("".join), JSON)

# parser, how many text arguments it takes, the errors it documents
PARSERS: dict[str, tuple[Callable[..., Any], int, tuple[type[Exception], ...]]] = {
    "split_sections": (split_sections, 1, (TaskError,)),
    "linux.parse_os_release": (linux.parse_os_release, 1, (TaskError,)),
    "linux.parse_uname": (linux.parse_uname, 1, (TaskError,)),
    "linux.parse_uptime": (linux.parse_uptime, 1, (TaskError,)),
    "linux.parse_meminfo": (linux.parse_meminfo, 1, (TaskError,)),
    "linux.parse_cpu": (linux.parse_cpu, 2, (TaskError,)),
    "linux.parse_df": (linux.parse_df, 1, (TaskError,)),
    "linux.parse_passwd": (linux.parse_passwd, 1, (TaskError,)),
    "linux.parse_group": (linux.parse_group, 1, (TaskError,)),
    "linux.parse_shadow": (linux.parse_shadow, 1, (TaskError,)),
    "packages.parse_apt_simulate": (packages.parse_apt_simulate, 1, (TaskError,)),
    "packages.parse_apt_list_upgradable": (packages.parse_apt_list_upgradable, 1, (TaskError,)),
    "packages.parse_dnf_check_update": (packages.parse_dnf_check_update, 1, (TaskError,)),
    "packages.parse_dnf_updateinfo": (packages.parse_dnf_updateinfo, 1, (TaskError,)),
    "packages.parse_rpm_versions": (packages.parse_rpm_versions, 1, (TaskError,)),
    "packages.parse_dpkg_versions": (packages.parse_dpkg_versions, 1, (TaskError,)),
    "packages.parse_zypper_list_updates": (packages.parse_zypper_list_updates, 1, (TaskError,)),
    "packages.parse_zypper_security_patches": (
        packages.parse_zypper_security_patches,
        1,
        (TaskError,),
    ),
    "packages.parse_apk_upgradable": (packages.parse_apk_upgradable, 1, (TaskError,)),
    "packages.parse_apk_versions": (packages.parse_apk_versions, 1, (TaskError,)),
    "services.parse_systemctl_show": (services.parse_systemctl_show, 2, (TaskError,)),
    "windows.parse_facts": (windows.parse_facts, 1, (TaskError,)),
    "windows.parse_hotfixes": (windows.parse_hotfixes, 1, (TaskError,)),
    # what its caller (mssp/backups/gather.py) turns into "restic printed an unreadable list"
    "restic.parse_snapshots": (restic.parse_snapshots, 1, (ValueError, KeyError, TypeError)),
    "restic.parse_time": (restic.parse_time, 1, (ValueError,)),
    "restic.parse_backup": (restic.parse_backup, 1, (ValueError,)),
    "restic.parse_init": (restic.parse_init, 1, ()),
}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_host_output_parsers_give_a_result_or_their_documented_error(name: str) -> None:
    parser, arity, documented = PARSERS[name]

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(st.lists(HOST_TEXT, min_size=arity, max_size=arity))
    def run(args: list[str]) -> None:
        try:
            parser(*args)
        except documented:
            pass

    run()
