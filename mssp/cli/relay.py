"""`mssp relay init|set|status`: set up the relay this core uses and check the link to it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from mssp.cli.common import CliContext, emit_json, handle_errors, json_option, pass_cli
from mssp.cli.init import open_vault, run_with_database
from mssp.errors import ConfigError, UsageError


def _cert_names(url: str, extra: tuple[str, ...]) -> list[str]:
    host = urlsplit(url).hostname
    if not host:
        raise UsageError("relay URL must be wss://host[:port]")
    return list(dict.fromkeys([host, *extra]))


@click.group("relay")
def relay_group() -> None:
    """The relay: how this core reaches sites whose networks accept no inbound connection."""


@relay_group.command("init")
@click.option(
    "--url", required=True, help="Where agents and this core reach the relay: wss://HOST:PORT"
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the relay's certificate, key and registry (default: DATA/relay).",
)
@click.option("--name", "names", multiple=True, help="Extra certificate name/address (repeatable).")
@click.option("--force", is_flag=True, help="Replace an existing certificate in --out.")
@json_option
@pass_cli
def relay_init(
    cli: CliContext, url: str, out: Path | None, names: tuple[str, ...], force: bool, as_json: bool
) -> None:
    """Make the relay's TLS certificate, authorise this core on it, and record it here.

    Writes relay.crt, relay.key and registry.json (this core's key already authorised) into
    --out: copy that directory to the relay host and run `mssp-relay --dir DIR serve`. Prints the
    certificate pin, which every join token carries.
    """
    from relay import tls
    from relay.errors import RelayError
    from relay.registry import Registry

    settings = cli.settings
    out = out or settings.data_dir / "relay"
    cert, key, registry_path = out / "relay.crt", out / "relay.key", out / "registry.json"
    with handle_errors():
        from relay import token as join_token

        try:
            url = join_token.validate_relay_url(url)
        except RelayError as exc:
            raise UsageError(str(exc)) from None
        if cert.exists() and not force:
            raise ConfigError(f"{cert} exists (its pin is in every join token); use --force")
        cert_names = _cert_names(url, names)
    vault = open_vault(settings)

    async def work() -> dict[str, Any]:
        from mssp.connectors import relay_store

        public = await relay_store.ensure_core_key(vault)
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            files = tls.generate(cert, key, cert_names)
            registry = Registry(registry_path)
            registry.lock()
            try:
                registry.add_core(public)
            finally:
                registry.unlock()
        except RelayError as exc:
            raise ConfigError(str(exc)) from None
        endpoint = await relay_store.set_endpoint(vault, url, files.pin)
        return {
            "url": endpoint.url,
            "pin": endpoint.pin,
            "dir": str(out),
            "core_public_key": public,
        }

    data = run_with_database(settings, work)
    if as_json:
        emit_json(data)
        return
    click.echo(f"relay:    {data['url']}")
    click.echo(f"pin:      {data['pin']}")
    click.echo(f"files:    {data['dir']} (relay.crt, relay.key, registry.json)")
    click.echo(f"core key: {data['core_public_key']}")
    click.echo(f"Next: copy {data['dir']} to the relay host and run `mssp-relay --dir DIR serve`.")


@relay_group.command("set")
@click.option(
    "--url", required=True, help="wss://HOST:PORT of a relay made with `mssp-relay init`."
)
@click.option("--pin", required=True, help="Its certificate pin (`mssp-relay pin`).")
@json_option
@pass_cli
def relay_set(cli: CliContext, url: str, pin: str, as_json: bool) -> None:
    """Use a relay made on its own host; prints the `mssp-relay core add` line to run there."""
    settings = cli.settings
    vault = open_vault(settings)

    async def work() -> dict[str, Any]:
        from mssp.connectors import relay_store

        endpoint = await relay_store.set_endpoint(vault, url, pin)
        return {
            "url": endpoint.url,
            "pin": endpoint.pin,
            "core_public_key": endpoint.core_public_key,
        }

    data = run_with_database(settings, work)
    if as_json:
        emit_json(data)
        return
    click.echo(f"relay {data['url']} recorded (pin {data['pin']}).")
    click.echo("On the relay host (relay stopped), authorise this core once:")
    click.echo(f"  mssp-relay core add '{data['core_public_key']}'")


@relay_group.command("status")
@json_option
@pass_cli
def relay_status(cli: CliContext, as_json: bool) -> None:
    """Check the link to the relay: reachable, this core accepted, how many agents are online."""
    settings = cli.settings
    vault = open_vault(settings)

    async def work() -> dict[str, Any]:
        from mssp.connectors import relay_store
        from mssp.connectors.relay import RelayPaths

        endpoint = await relay_store.get_endpoint()
        if endpoint is None:
            raise ConfigError("no relay configured: run `mssp relay init` or `mssp relay set`")
        result: dict[str, Any] = {
            "url": settings.relay_url or endpoint.url,
            "pin": endpoint.pin,
            "core_public_key": endpoint.core_public_key,
        }
        paths = RelayPaths(settings, vault, timeout=min(5.0, settings.connect_timeout))
        started = time.monotonic()
        try:
            presence = await paths.presence()
            result.update(
                reachable=True,
                error=None,
                admin_rtt_ms=round((time.monotonic() - started) * 1000, 1),
                sites=len(presence),
                online=sum(1 for p in presence if p.online),
            )
        except Exception as exc:
            result.update(reachable=False, error=str(exc), sites=None, online=None)
        finally:
            await paths.aclose()
        return result

    data = run_with_database(settings, work)
    if as_json:
        emit_json(data)
    else:
        click.echo(f"relay:     {data['url']}")
        click.echo(f"pin:       {data['pin']}")
        if data["reachable"]:
            click.echo(
                f"status:    reachable, this core accepted ({data['admin_rtt_ms']} ms); "
                f"{data['online']} of {data['sites']} agent(s) online"
            )
        else:
            click.echo(f"status:    NOT reachable: {data['error']}")
    if not data["reachable"]:
        raise SystemExit(1)


def register(group: click.Group) -> None:
    group.add_command(relay_group)
