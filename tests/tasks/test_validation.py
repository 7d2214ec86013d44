"""Hostile parameter values are refused before anything runs (shell and PowerShell injections)."""

# ruff: noqa: E501 (tables of whole SSH key lines)

from __future__ import annotations

import pytest

from mssp.errors import ParameterError
from mssp.tasks import all_tasks, get_task, validate

INJECTIONS = [
    "jdoe; rm -rf /",
    "$(rm -rf /)",
    "`reboot`",
    "jdoe\nrm -rf /",
    "jdoe'",
    'jdoe"',
    "$(Remove-Item C:\\ -Recurse)",
    "@(Stop-Computer)",
    "jdoe|whoami",
    "jdoe&calc",
    "-rf",
    "jdoe\x00",
    "jdoe ",
    "../../etc/passwd",
    "",
]

# (task, parameter, other required parameters)
TARGETS = [
    ("accounts.user", "user", {}),
    ("accounts.disable", "user", {}),
    ("accounts.enable", "user", {}),
    ("accounts.remove", "user", {}),
    ("accounts.key", "user", {"key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}),
    ("service.status", "name", {}),
    ("service.restart", "name", {}),
]  # fmt: skip


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize("task,param,others", TARGETS)
def test_injections_in_names_are_refused(task, param, others, value) -> None:
    with pytest.raises(ParameterError):
        get_task(task)({**others, param: value})


@pytest.mark.parametrize(
    "param,value",
    [
        ("groups", ["sudo;id"]),
        ("groups", ["$(id)"]),
        ("remove_groups", ["`id`"]),
        ("comment", "Jane'; id; '"),
        ("comment", "$(id)"),
        ("shell", "/bin/bash -c id"),
        ("shell", "/bin/$(id)"),
        ("ssh_key_add", ["ssh-ed25519 AAAA$(id)"]),
        ("ssh_key_add", ['command="rm -rf /" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl']),
        ("ssh_key_add", ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl x\nssh-rsa AAAA"]),
        ("ssh_key_add", ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl `id`"]),
        ("ssh_key_add", ["ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"]),
        ("password_secret", "x; cat /etc/shadow"),
        ("admin", "yes; id"),
        ("state", "present; id"),
    ],
)  # fmt: skip
def test_account_parameters_refuse_injections(param, value) -> None:
    with pytest.raises(ParameterError):
        get_task("accounts.user")({"user": "jdoe", param: value}).desired()


@pytest.mark.parametrize(
    "exclude", [["linux-*; id"], ["$(id)"], ["`id`"], ["a b"], ["KB1|id"], ["@(Stop-Computer)"]]
)
@pytest.mark.parametrize("task", ["updates.check", "updates.apply"])
def test_update_exclusions_refuse_injections(task, exclude) -> None:
    with pytest.raises(ParameterError):
        get_task(task)({"exclude": exclude})


def test_update_reboot_policy_is_a_closed_set() -> None:
    with pytest.raises(ParameterError, match="one of never, if-required, always"):
        get_task("updates.apply")({"reboot": "now; reboot"})


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\x00b"])
def test_script_arguments_must_be_one_line(value, tmp_path) -> None:
    script = tmp_path / "s.sh"
    script.write_text("echo hi\n")
    with pytest.raises(ParameterError):
        get_task("script")({"path": str(script), "args": [value]})


def test_script_arguments_may_contain_shell_syntax_because_they_are_quoted(tmp_path) -> None:
    script = tmp_path / "s.sh"
    script.write_text("echo hi\n")
    task = get_task("script")({"path": str(script), "args": ["$(id)", "; rm -rf /", "`x`"]})
    assert task.params["args"] == ["$(id)", "; rm -rf /", "`x`"]


def test_script_path_must_exist(tmp_path) -> None:
    with pytest.raises(ParameterError, match="no script file"):
        get_task("script")({"path": str(tmp_path / "missing.sh")})


@pytest.mark.parametrize(
    "path", ["relative/x", "/a/../b", "/a/$(id)", "/a b", "/a;b", "/a\nb", "/a/`x`"]
)
def test_absolute_path_validator(path) -> None:
    with pytest.raises(ParameterError):
        validate.absolute_path(path)


def test_valid_values_pass() -> None:
    get_task("accounts.user")(
        {
            "user": "jdoe",
            "groups": "users,adm",
            "comment": "Jane Doe",
            "ssh_key_add": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl jdoe@laptop",
            "password_secret": "acme-dental/jdoe-password",
            "admin": "yes",
        }
    ).desired()
    get_task("updates.apply")({"exclude": "linux-image-*,KB5046540", "security_only": "yes"})
    get_task("service.restart")({"name": "ssh@instance.service"})
    validate.windows_user("Administrator")


def test_every_task_is_registered_with_a_summary() -> None:
    tasks = all_tasks()
    for name in ["facts", "updates.check", "updates.apply", "accounts.user", "accounts.disable",
                 "accounts.enable", "accounts.remove", "accounts.key", "service.status",
                 "service.restart", "reboot", "script"]:  # fmt: skip
        assert tasks[name].summary, name


@pytest.mark.parametrize(
    "name,destructive",
    [("facts", False), ("updates.check", False), ("service.status", False),
     ("updates.apply", True), ("accounts.disable", True), ("accounts.remove", True),
     ("reboot", True), ("script", True), ("service.restart", True)],
)  # fmt: skip
def test_destructive_tasks_are_marked(name, destructive) -> None:
    assert get_task(name).destructive is destructive


def test_password_secret_becomes_the_only_declared_secret() -> None:
    task = get_task("accounts.user")({"user": "jdoe", "password_secret": "jdoe-pw"})
    assert task.secrets == ("credential:jdoe-pw",)
    assert get_task("accounts.user")({"user": "jdoe"}).secrets == ()


def test_generated_passwords_are_strong_and_inert() -> None:
    from mssp.tasks.accounts import generate_password

    seen = {generate_password() for _ in range(50)}
    assert len(seen) == 50
    for value in seen:
        assert len(value) == 24
        assert any(c.isupper() for c in value) and any(c.islower() for c in value)
        assert any(c.isdigit() for c in value) and any(not c.isalnum() for c in value)
        assert not set(value) & set(":'\"$`\\ \n;|&()@")
    with pytest.raises(ParameterError):
        generate_password(8)
