"""`mssp tui` and bare `mssp`: help, and clear errors before the terminal is taken."""

from __future__ import annotations

from click.testing import CliRunner

from mssp.cli import cli


def test_tui_help_lists_the_keys() -> None:
    result = CliRunner().invoke(cli, ["tui", "--help"])
    assert result.exit_code == 0
    assert "/ filter" in result.output and "--read-only" in result.output


def test_bare_mssp_opens_the_dashboard_which_needs_a_database(tmp_path) -> None:
    result = CliRunner().invoke(cli, [], env={"MSSP_HOME": str(tmp_path)})
    assert result.exit_code == 2
    assert "run `mssp init` first" in result.output


def test_a_bad_key_binding_is_reported_before_anything_starts(tmp_path) -> None:
    (tmp_path / "config.toml").write_text('[keys]\n"no-such-binding" = "x"\n')
    result = CliRunner().invoke(cli, ["tui", "--read-only"], env={"MSSP_HOME": str(tmp_path)})
    assert result.exit_code == 2
    assert "no-such-binding" in result.output and "known ids" in result.output
