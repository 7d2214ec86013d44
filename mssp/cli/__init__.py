"""The `mssp` command: the composition root. Each module in this package adds its commands.

A module here registers commands by defining ``register(group: click.Group) -> None``. Modules are
discovered when a command is looked up, so a feature adds its commands without editing a shared
file. Heavy imports (Textual, the lab) stay inside the command functions.

Discovery imports every module (~0.3 s with the ORM and asyncssh behind some of them), so the
hottest commands are found through ``_HOT`` first: `mssp exec` that hands its run to a running
daemon then starts in ~0.1 s. ``_HOT`` is only a shortcut; a name missing from it is still found.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from mssp import __version__
from mssp.cli.common import CliContext, handle_errors

EXIT_CODES_HELP = """\b
Exit codes:
  0  success (every host ok or changed)
  1  error
  2  usage error or invalid input (nothing was changed)
  3  not found / already exists
  4  run finished with failed hosts
  5  run finished with unreachable or timed-out hosts (none failed)
  6  run interrupted, cancelled or halted
  130 stopped by Ctrl-C
"""


#: command name -> the module that registers it, for commands whose start-up time matters
_HOT = {"exec": "runs", "run": "runs", "runs": "runs"}


class _DiscoveringGroup(click.Group):
    """A group whose commands are registered by the package's modules on first look-up."""

    _discovered = False
    _loaded: set[str]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _HOT:
            _load(_HOT[cmd_name])
        if cmd_name not in self.commands:
            _register_all()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        _register_all()
        return super().list_commands(ctx)


@click.group(
    cls=_DiscoveringGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES_HELP,
)
@click.version_option(__version__, prog_name="mssp")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """mssp: every client, site and host from one terminal.

    Without a command, opens the dashboard.
    """
    ctx.obj = CliContext(verbosity=verbose)
    if ctx.invoked_subcommand is None:
        tui_cmd = cli.get_command(ctx, "tui")
        if tui_cmd is None:
            click.echo(ctx.get_help())
            return
        ctx.invoke(tui_cmd)


_registered: set[str] = set()


def _load(name: str) -> None:
    """Import one command module and let it register its commands (once)."""
    if name in _registered:
        return
    _registered.add(name)
    module = importlib.import_module(f"{__name__}.{name}")
    register = getattr(module, "register", None)
    if register is not None:
        register(cli)


def _register_all() -> None:
    package = sys.modules[__name__]
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name == "common" or info.name.startswith("_"):
            continue
        _load(info.name)


def main() -> None:
    """Console entry point."""
    with handle_errors():
        cli.main(standalone_mode=True)
