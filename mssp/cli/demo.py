"""`mssp demo`: bring up the lab (if none is running) and open the dashboard on it."""

from __future__ import annotations

import os
import re

import click

from mssp.cli.common import CliContext, pass_cli, run_async
from mssp.config import Settings


def _remember_vault_key_file(settings: Settings) -> Settings:
    """Point config.toml at the lab's vault key file so later commands unlock unattended."""
    from mssp.lab.inventory import lab_vault_key_file

    key_file = lab_vault_key_file(settings)
    if settings.vault_key_file is not None or not key_file.exists():
        return settings
    config = settings.config_file
    text = config.read_text(encoding="utf-8") if config.exists() else ""
    if not re.search(r"(?m)^\s*vault_key_file\s*=", text):
        line = f'vault_key_file = "{key_file}"\n'
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(line + text, encoding="utf-8")
        os.chmod(config, 0o600)
        click.echo(f"demo: {config} now unlocks the lab vault with {key_file}")
    return settings.replace(vault_key_file=key_file)


def _relay_up(settings: Settings) -> None:
    """Start (or repair) the lab relay and the relay-only site's agent, so that site is reached."""
    from mssp.lab import relaylink
    from mssp.lab.state import load

    state = load(settings)
    if state is None or not any(s.reach == "relay" for s in state.sites):
        return
    click.echo("demo: starting the lab relay and the relay-only site's agent")
    env = dict(os.environ)
    if settings.vault_key_file is not None:
        env.setdefault("MSSP_VAULT_KEY_FILE", str(settings.vault_key_file))
    link = run_async(relaylink.up(settings, env))
    click.echo(f"demo: agent of {link.site} online through the relay")


def _lab_running(settings: Settings) -> bool:
    from mssp.lab.host import power_state
    from mssp.lab.state import lab_dir, load

    state = load(settings)
    if state is None:
        return False
    hosts_dir = lab_dir(settings) / "hosts"
    return any(power_state(h, hosts_dir / h.key) == "up" for h in state.hosts)


@click.command("demo")
@click.option("--sites", default=3, show_default=True, type=int, help="Lab sites.")
@click.option("--hosts-per-site", default=4, show_default=True, type=int, help="Hosts per site.")
@click.option(
    "--windows/--no-windows",
    default=True,
    show_default=True,
    help="Include a SIMULATED Windows host (recorded WinRM replies, not real Windows).",
)
@click.option(
    "--no-tui", is_flag=True, help="Set up the lab, then stop (do not open the dashboard)."
)
@click.pass_context
@pass_cli
def demo(
    cli: CliContext,
    ctx: click.Context,
    sites: int,
    hosts_per_site: int,
    windows: bool,
    no_tui: bool,
) -> None:
    """Start the lab of real hosts (if none is running) and open the dashboard on it.

    The lab's clients are named lab-*; `mssp lab down` removes them and every host again.
    Use a separate MSSP_HOME for the demo (`make demo` uses ./.demo) to keep it apart from
    your real clients.
    """
    from mssp.cli.lab import _up
    from mssp.lab.layout import LabSpec

    settings = cli.settings
    if _lab_running(settings):
        click.echo("demo: the lab is already running (`mssp lab status`)")
    else:
        reduced = os.geteuid() != 0
        if reduced:
            click.echo("demo: not root: starting the reduced lab (sshd processes, no isolation)")
        spec = LabSpec(
            sites=sites,
            hosts_per_site=hosts_per_site,
            relay_only_site=not reduced,
            windows_host=windows and not reduced,
        )
        spec.validate()
        state = run_async(_up(settings, spec, True, reduced))
        click.echo(f"demo: {len(state.hosts)} lab hosts up in {state.started_seconds:.1f} s")
        for note in state.notes:
            click.echo(f"note: {note}")
    settings = _remember_vault_key_file(settings)
    cli._settings = settings
    if os.geteuid() == 0:
        _relay_up(settings)
    if no_tui:
        click.echo(
            "demo: ready. Try `mssp hosts 'client:lab-*' --json` or `mssp` for the dashboard."
        )
        return
    root = ctx.find_root().command
    tui_cmd = root.get_command(ctx, "tui") if isinstance(root, click.Group) else None
    if tui_cmd is None:
        click.echo("demo: the dashboard is not available in this build; try `mssp hosts`")
        return
    ctx.invoke(tui_cmd)


def register(group: click.Group) -> None:
    group.add_command(demo)
