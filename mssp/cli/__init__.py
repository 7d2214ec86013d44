"""The `mssp` command: the composition root. Each module in this package adds its commands.

A module here registers commands by defining ``register(group: click.Group) -> None``. Modules are
discovered at start-up, so a feature adds its commands without editing a shared file. Heavy imports
(Textual, the lab) stay inside the command functions.
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


@click.group(
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


def _register_all() -> None:
    package = sys.modules[__name__]
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name == "common" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(cli)


_register_all()


def main() -> None:
    """Console entry point."""
    with handle_errors():
        cli.main(standalone_mode=True)
