"""Plans from captured facts: what each task would change, decided without a host."""

from __future__ import annotations

from pathlib import Path

import pytest

from mssp.errors import TaskError
from mssp.tasks.accounts import Desired, new_keys, parse_linux_account, plan_common
from mssp.tasks.parsers import packages as pk
from mssp.tasks.parsers import windows as win
from mssp.tasks.updates import select
from mssp.tasks.windows.wu import select_windows

FIXTURES = Path(__file__).with_name("fixtures")
KEY_OLD = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
KEY_NEW = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII7aCKY/NYScOGfsyn3y5X32XLt5fFXTP8cus7du4jzs"


def debian_pending() -> list[pk.PackageUpdate]:
    return pk.parse_apt_simulate((FIXTURES / "packages/apt_simulate_debian12.txt").read_text())


@pytest.mark.parametrize(
    "security_only,exclude,chosen",
    [
        (False, [], ["libssl3", "openssl", "linux-image-6.1.0-27-amd64", "linux-image-amd64",
                     "tzdata"]),
        (True, [], ["libssl3", "openssl", "linux-image-6.1.0-27-amd64", "linux-image-amd64"]),
        (True, ["linux-image-*"], ["libssl3", "openssl"]),
        (False, ["tzdata", "openssl"], ["libssl3", "linux-image-6.1.0-27-amd64",
                                        "linux-image-amd64"]),
    ],
)  # fmt: skip
def test_update_selection_from_debian_capture(security_only, exclude, chosen) -> None:
    picked, skipped = select(debian_pending(), security_only=security_only, exclude=exclude)
    assert [u.name for u in picked] == chosen
    assert len(picked) + len(skipped) == 5


@pytest.mark.parametrize(
    "security_only,exclude,chosen",
    [
        (False, [], ["KB5046616", "KB5046540", "KB2267602"]),
        (True, [], ["KB5046616"]),
        (False, ["KB5046540", "*Defender*"], ["KB5046616"]),
        (False, ["5046616"], ["KB5046540", "KB2267602"]),
    ],
)
def test_windows_update_selection_from_capture(security_only, exclude, chosen) -> None:
    search = win.parse_wu_search((FIXTURES / "windows/wu_search_ws2022.json").read_text())
    picked, _ = select_windows(search, security_only=security_only, exclude=exclude)
    assert [u.label for u in picked] == chosen


def account(name: str):
    return parse_linux_account((FIXTURES / f"accounts/{name}.txt").read_text(), "jdoe")


def test_account_read_from_capture() -> None:
    enabled = account("jdoe_enabled")
    assert enabled.exists and not enabled.disabled and enabled.home == "/home/jdoe"
    assert enabled.member_of == {"users", "jdoe"} and enabled.admin_group == "sudo"
    # the user's own file cannot fake a section: the "today" inside keys is just a key line
    assert enabled.keys[1] == "@@mssp-section:today"
    disabled = account("jdoe_disabled")
    assert disabled.disabled and disabled.password_locked and "sudo" in disabled.member_of
    absent = account("jdoe_absent_rocky")
    assert not absent.exists and absent.admin_group == "wheel"


def ops(acct, want: Desired) -> list[str]:
    return [f"{s.op}:{s.arg}" if s.arg else s.op for s in plan_common(
        acct, want, admin_group=acct.admin_group, keys=getattr(acct, "keys", ()))]  # fmt: skip


PLAN_CASES = [
    ("jdoe_enabled", Desired("jdoe", "disabled"), ["disable"]),
    ("jdoe_disabled", Desired("jdoe", "disabled"), []),
    ("jdoe_absent_rocky", Desired("jdoe", "disabled"), []),
    ("jdoe_absent_rocky", Desired("jdoe", "absent"), []),
    ("jdoe_enabled", Desired("jdoe", "absent"), ["remove"]),
    ("jdoe_disabled", Desired("jdoe", "enabled"), ["enable:unlock"]),
    ("jdoe_disabled", Desired("jdoe", "enabled_existing"), ["enable:unlock"]),
    ("jdoe_absent_rocky", Desired("jdoe", "enabled_existing"), []),
    ("jdoe_enabled", Desired("jdoe", "present"), []),
    ("jdoe_enabled", Desired("jdoe", "present", admin="yes"), ["add_group:sudo"]),
    ("jdoe_disabled", Desired("jdoe", "present", admin="no"), ["remove_group:sudo"]),
    ("jdoe_absent_rocky", Desired("jdoe", "present", password=True, admin="yes",
                                  keys_add=(KEY_NEW,)),
     ["create", "password", "add_group:wheel", "keys"]),
    ("jdoe_enabled", Desired("jdoe", "present", password=True), []),
    ("jdoe_enabled", Desired("jdoe", "present", password=True, update_password="always"),
     ["password"]),
    ("jdoe_enabled", Desired("jdoe", "existing", keys_add=(KEY_OLD + " other-comment",)), []),
    ("jdoe_enabled", Desired("jdoe", "existing", keys_add=(KEY_NEW,)), ["keys"]),
    ("jdoe_enabled", Desired("jdoe", "existing", keys_remove=(KEY_OLD,)), ["keys"]),
    ("jdoe_enabled", Desired("jdoe", "existing", keys_remove=(KEY_NEW,)), []),
    ("jdoe_enabled", Desired("jdoe", "present", groups=("users",)), []),
    ("jdoe_enabled", Desired("jdoe", "present", remove_groups=("users",)), ["remove_group:users"]),
]  # fmt: skip


@pytest.mark.parametrize("fixture,want,expected", PLAN_CASES)
def test_account_plans(fixture, want, expected) -> None:
    assert ops(account(fixture), want) == expected


def test_account_plan_refusals() -> None:
    with pytest.raises(TaskError, match="does not exist"):
        ops(account("jdoe_absent_rocky"), Desired("jdoe", "existing", keys_add=(KEY_NEW,)))
    with pytest.raises(TaskError, match="group 'docker' does not exist"):
        ops(account("jdoe_enabled"), Desired("jdoe", "present", groups=("docker",)))


def test_new_keys_keeps_other_lines_and_matches_by_key_not_comment() -> None:
    current = ("# managed", KEY_OLD + " jdoe@laptop", "")
    want = Desired("jdoe", "existing", keys_add=(KEY_NEW + " new",), keys_remove=(KEY_OLD,))
    assert new_keys(current, want) == ("# managed", "", KEY_NEW + " new")


@pytest.mark.parametrize("manager", ["zypper", "apk"])
def test_security_only_is_refused_where_updates_are_not_classified(manager) -> None:
    from mssp.tasks.updates import require_security_data

    with pytest.raises(TaskError, match="does not classify security updates"):
        require_security_data(manager, True)
    require_security_data(manager, False)
    require_security_data("apt", True)
