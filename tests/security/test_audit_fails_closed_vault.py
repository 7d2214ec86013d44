"""vault passwd and vault rotate-key must be refused when the audit cannot be written."""

import json

import pytest

from tests.security.test_audit_fails_closed import PASS, _break_audit, run  # noqa: F401


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (("vault", "passwd"), "another passphrase\nanother passphrase\n"),
        (("vault", "rotate-key"), None),
    ],
)
def test_vault_changes_are_refused_when_the_audit_cannot_be_written(run, args, stdin):  # noqa: F811
    header = (run.home / "vault.json").read_bytes()
    _break_audit(run.home)
    result = run(*args, input=stdin)
    assert result.exit_code != 0, result.output
    assert (run.home / "vault.json").read_bytes() == header  # passphrase and keys unchanged
    status = run("vault", "status", "--json")
    assert status.exit_code == 0, status.output  # the old passphrase still opens it
    assert json.loads(status.output)
