"""If the audit log cannot be written, the privileged action is refused and nothing changes.

tests/test_audit.py::test_audit_write_failure_fails_closed proves that ``audit.record`` raises
AuditError; this file proves the commands act on it. A SQLite trigger makes every insert into
the audit table fail (as a full disk or a read-only file would); then credential commands must
exit non-zero, change nothing, and print no traceback.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mssp.cli import cli

PASS = "audit fail-closed passphrase"


@pytest.fixture
def run(tmp_path: Path) -> Callable[..., Result]:
    home = tmp_path / "home"
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        env = {"MSSP_HOME": str(home), "MSSP_VAULT_PASSPHRASE": PASS}
        return runner.invoke(cli, list(args), input=input, env=env)

    invoke.home = home  # type: ignore[attr-defined]
    assert invoke("init").exit_code == 0
    assert invoke("client", "add", "Acme").exit_code == 0
    assert invoke("cred", "add", "acme/kept", "--password-stdin", input="kept\n").exit_code == 0
    return invoke


def _break_audit(home: Path) -> None:
    with sqlite3.connect(home / "mssp.db") as conn:
        conn.execute(
            "CREATE TRIGGER audit_refuse BEFORE INSERT ON audit_entry "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )


def _state(run: Callable[..., Result]) -> tuple[list[dict], bytes]:
    listed = run("cred", "list", "--json")
    assert listed.exit_code == 0, listed.output
    with sqlite3.connect(run.home / "mssp.db") as conn:  # type: ignore[attr-defined]
        rows = conn.execute("SELECT * FROM credential ORDER BY id").fetchall()
    return json.loads(listed.output), repr(rows).encode()


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (("cred", "add", "acme/new", "--password-stdin"), "new-secret\n"),
        (("cred", "update", "acme/kept", "--password-stdin"), "changed\n"),
        (("cred", "remove", "acme/kept", "--yes"), None),
    ],
)
def test_credential_changes_are_refused_when_the_audit_cannot_be_written(
    run: Callable[..., Result], args: tuple[str, ...], stdin: str | None
) -> None:
    before = _state(run)
    _break_audit(run.home)  # type: ignore[attr-defined]
    result = run(*args, input=stdin)
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "audit" in result.output.lower(), result.output
    assert _state(run) == before
