"""Every command answers --help, and every listing command offers --json."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from mssp.cli import cli


def _walk(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None
        path = (*prefix, name)
        out.append(path)
        if isinstance(cmd, click.Group):
            out.extend(_walk(cmd, path))
    return out


COMMANDS = _walk(cli)


def _command(path: tuple[str, ...]) -> click.Command:
    cmd: click.Command = cli
    for name in path:
        assert isinstance(cmd, click.Group)
        found = cmd.get_command(click.Context(cmd), name)
        assert found is not None
        cmd = found
    return cmd


def test_the_command_tree_is_complete() -> None:
    names = {p[0] for p in COMMANDS}
    expected = {
        "init",
        "client",
        "site",
        "host",
        "hosts",
        "cred",
        "vault",
        "inventory",
        "lab",
        "exec",
        "run",
        "runs",
        "audit",
        "demo",
        "tui",
        "ssh",
        "cp",
        "forward",
        "schedule",
        "daemon",
        "backups",
        "notify",
    }
    assert expected <= names, expected - names


@pytest.mark.parametrize("path", COMMANDS, ids=["/".join(p) for p in COMMANDS])
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert _command(path).help or _command(path).short_help, f"{path} has no help text"


LISTINGS = [p for p in COMMANDS if p[-1] in ("list", "status", "show", "hosts", "history")]


@pytest.mark.parametrize("path", LISTINGS, ids=["/".join(p) for p in LISTINGS])
def test_every_listing_offers_json(path: tuple[str, ...]) -> None:
    params = {opt for p in _command(path).params for opt in getattr(p, "opts", [])}
    assert "--json" in params, f"{' '.join(path)} prints results but has no --json"
