"""`mssp inventory import`: preview always, --dry-run writes nothing, errors exit 2 (SQLite)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mssp.cli import cli

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MSSP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MSSP_DATABASE_URL", raising=False)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, ["inventory", "import", *args], catch_exceptions=False)

    return invoke


def test_dry_run_then_import_then_nothing_to_do(run) -> None:
    ini = str(FIXTURES / "ansible_ini" / "hosts.ini")
    dry = run(ini, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "create    host   acme-dental/acme-dc/acme-dca  winrm://" in dry.stdout
    assert "mapping: mssp_client/mssp_site vars win" in dry.stdout
    assert "dry run: nothing was written" in dry.stdout
    real = run(ini)
    assert real.exit_code == 0, real.output
    assert "create    host" in real.stdout  # the preview is always shown
    assert "imported: 13 created, 0 updated, 0 unchanged" in real.stdout
    again = run(ini)
    assert again.exit_code == 0
    assert "nothing to do: everything is unchanged" in again.stdout
    assert "create " not in again.stdout


def test_json_preview(run) -> None:
    result = run(str(FIXTURES / "clients.csv"), "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["format"] == "csv" and doc["dry_run"] is True and doc["written"] is False
    assert doc["summary"]["create"] == {"client": 2, "site": 2, "host": 3}
    dc01 = next(c for c in doc["changes"] if c["name"] == "acme-dental/main-office/dc01")
    assert dc01["host"]["transport"] == "winrm" and dc01["host"]["port"] == 5986


def test_ssh_config_needs_client_and_site(run) -> None:
    config = str(FIXTURES / "ssh" / "config")
    result = run(config, "--format", "ssh-config")
    assert result.exit_code == 2
    assert "give --client and --site" in result.stderr
    ok = run(config, "--format", "ssh-config", "--client", "acme", "--site", "main", "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["summary"]["create"]["host"] == 6


def test_broken_file_exits_2_names_line_and_imports_nothing(run) -> None:
    bad = FIXTURES / "broken" / "bad-range.ini"
    result = run(str(bad), "--client", "acme", "--site", "main")
    assert result.exit_code == 2
    assert f"{bad}:3: host range [01:1x]" in result.stderr
    after = run(str(FIXTURES / "clients.csv"), "--dry-run", "--json")
    assert json.loads(after.stdout)["summary"]["unchanged"] == {"client": 0, "site": 0, "host": 0}


@pytest.mark.parametrize("args", [("--client", "Not A Slug"), ("--format", "xml")])
def test_bad_options_exit_2(run, args: tuple[str, ...]) -> None:
    result = run(str(FIXTURES / "clients.csv"), *args)
    assert result.exit_code == 2


def test_help_explains_the_mapping_rule(run) -> None:
    result = run("--help")
    assert result.exit_code == 0
    for word in ("--dry-run", "--json", "--client", "mssp_client", "Nothing is ever deleted"):
        assert word in result.stdout
