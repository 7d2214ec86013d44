"""``mssp-relay``: make the relay's certificate, manage its registry, and serve."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from relay import protocol, tls
from relay.cli_common import emit, run_guarded, stop_on_signals
from relay.errors import ConfigError, RegistryError
from relay.registry import Registry
from relay.server import RelayConfig, RelayServer, tune_tls_buffers

DEFAULT_DIR = Path("/var/lib/mssp-relay")


def _paths(directory: Path) -> tuple[Path, Path, Path]:
    return directory / "relay.crt", directory / "relay.key", directory / "registry.json"


def cmd_init(args: argparse.Namespace) -> int:
    cert, key, _ = _paths(args.dir)
    if cert.exists() and not args.force:
        raise ConfigError(f"{cert} exists (its pin is in every join token); use --force to replace")
    args.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    files = tls.generate(cert, key, args.name)
    emit(
        {"pin": files.pin, "cert": str(cert)},
        args.json,
        f"certificate: {cert}\npin: {files.pin}\n"
        "Next: give the core this pin, and add its key with `mssp-relay core add`.",
    )
    return 0


def cmd_pin(args: argparse.Namespace) -> int:
    cert, _, _ = _paths(args.dir)
    if not cert.exists():
        raise ConfigError(f"{cert} not found; run `mssp-relay init` first")
    pin = tls.pin_of_pem_file(cert)
    emit({"pin": pin}, args.json, pin)
    return 0


def _edit(args: argparse.Namespace) -> Registry:
    registry = Registry(_paths(args.dir)[2])
    registry.lock()  # refuses while a relay runs: it holds the registry in memory
    return registry


def cmd_core_add(args: argparse.Namespace) -> int:
    text = Path(args.key[1:]).read_text() if args.key.startswith("@") else args.key
    registry = _edit(args)
    try:
        key = registry.add_core(text)
    finally:
        registry.unlock()
    emit({"core_key": key}, args.json, f"core key added: {key}")
    return 0


def cmd_core_remove(args: argparse.Namespace) -> int:
    registry = _edit(args)
    try:
        registry.remove_core(args.key)
    finally:
        registry.unlock()
    emit({"removed": args.key}, args.json, "core key removed")
    return 0


def cmd_core_list(args: argparse.Namespace) -> int:
    cores = Registry(_paths(args.dir)[2]).data.cores
    emit({"cores": cores}, args.json, "\n".join(cores) or "(no core keys)")
    return 0


def cmd_site_list(args: argparse.Namespace) -> int:
    sites = Registry(_paths(args.dir)[2]).data.sites
    rows = [
        {
            "site": s.site_id,
            "enrolled": s.agent_key is not None,
            "joined_at": s.joined_at,
            "revoked": s.revoked,
            "token_pending": s.pending is not None,
        }
        for s in sites.values()
    ]
    text = "\n".join(
        f"{r['site']:40} {'revoked' if r['revoked'] else 'enrolled' if r['enrolled'] else '-'}"
        f"{'  (token pending)' if r['token_pending'] else ''}"
        for r in rows
    )
    emit({"sites": rows}, args.json, text or "(no sites)")
    return 0


def cmd_site_revoke(args: argparse.Namespace) -> int:
    try:
        site = protocol.site_id(args.site)
    except Exception as exc:
        raise RegistryError(str(exc)) from None
    registry = _edit(args)
    try:
        registry.revoke(site)
    finally:
        registry.unlock()
    emit({"revoked": site}, args.json, f"site {site} revoked")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    cert, key, registry = _paths(args.dir)
    if not cert.exists():
        raise ConfigError(f"{cert} not found; run `mssp-relay init` first")
    config = RelayConfig(
        cert_path=cert,
        key_path=key,
        registry_path=registry,
        host=args.host,
        port=args.port,
        auth_timeout=args.auth_timeout,
        heartbeat=args.heartbeat,
    )
    if not 0 < config.auth_timeout < 10:
        raise ConfigError("--auth-timeout must be between 0 and 10 seconds")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    tune_tls_buffers()

    async def serve() -> None:
        server = RelayServer(config)
        await server.start()
        stopped = asyncio.Event()
        stop_on_signals(stopped.set)
        await stopped.wait()
        await server.stop()

    asyncio.run(serve())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mssp-relay",
        description="The mssp relay: a blind rendezvous between the core and client-site agents.",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR,
        help=f"relay state directory (default {DEFAULT_DIR})",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, fn, help_text: str, parent=sub) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        p.set_defaults(fn=fn)
        return p

    p = add("init", cmd_init, "make the relay's TLS certificate and print its pin")
    p.add_argument(
        "--name",
        action="append",
        required=True,
        help="host name or IP address clients use (repeatable)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing certificate")
    add("pin", cmd_pin, "print the certificate pin")
    p = add("serve", cmd_serve, "run the relay until SIGINT/SIGTERM")
    p.add_argument("--host", default="0.0.0.0", help="listen address (default 0.0.0.0)")  # noqa: S104
    p.add_argument("--port", type=int, default=8443, help="listen port (default 8443)")
    p.add_argument(
        "--auth-timeout",
        type=float,
        default=5.0,
        help="seconds an unauthenticated connection may live (default 5, max 10)",
    )
    p.add_argument("--heartbeat", type=float, default=20.0, help="heartbeat seconds (default 20)")
    core = sub.add_parser("core", help="core keys allowed on the admin channel")
    core_sub = core.add_subparsers(dest="core_command", required=True)
    p = add("add", cmd_core_add, "authorise a core key (ssh-ed25519 line or @file)", core_sub)
    p.add_argument("key")
    p = add("remove", cmd_core_remove, "remove a core key", core_sub)
    p.add_argument("key")
    add("list", cmd_core_list, "list core keys", core_sub)
    site = sub.add_parser("site", help="sites known to this relay")
    site_sub = site.add_subparsers(dest="site_command", required=True)
    add("list", cmd_site_list, "list sites", site_sub)
    p = add("revoke", cmd_site_revoke, "revoke a site (relay stopped; else use the core)", site_sub)
    p.add_argument("site")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_guarded(lambda: args.fn(args))


if __name__ == "__main__":
    raise SystemExit(main())
