"""``mssp-agent``: enrol this machine at a site (``join``), keep the link (``run``), ``status``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from relay.agent import Agent, AgentConfig, join, load_host_key
from relay.allowlist import DEFAULT_PORTS, Allowlist
from relay.cli_common import emit, run_guarded, stop_on_signals
from relay.errors import ConfigError

DEFAULT_DIR = Path("/var/lib/mssp-agent")


def cmd_join(args: argparse.Namespace) -> int:
    # "-" reads the token from stdin, keeping it out of the process list and shell history.
    token = sys.stdin.readline() if args.token == "-" else args.token  # noqa: S105
    allowlist = Allowlist.parse(args.network, args.port or None)
    if (args.state_dir / "agent.json").exists() and not args.force:
        raise ConfigError(f"{args.state_dir} already holds an enrolment; use --force to replace")
    result = asyncio.run(join(token, args.state_dir, allowlist))
    emit(
        {"site": result.site_id, "host_key": result.host_key, **allowlist.to_json()},
        args.json,
        f"enrolled at site {result.site_id}\nhost key: {result.host_key}\n"
        f"allowed: {', '.join(map(str, allowlist.networks))} ports "
        f"{', '.join(map(str, allowlist.ports))}\nNext: mssp-agent run",
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = AgentConfig.load(args.state_dir)
    key = load_host_key(args.state_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    async def run() -> str:
        agent = Agent(config, key)
        task = asyncio.create_task(agent.run())
        stopping: list[asyncio.Task[None]] = []
        stop_on_signals(
            lambda: (
                stopping
                or stopping.append(
                    asyncio.create_task(agent.stop(drain_timeout=args.drain_timeout))
                )
            )
        )
        state = await task
        await asyncio.gather(*stopping)
        return state.value

    final = asyncio.run(run())
    print(f"agent {final}", file=sys.stderr)
    return 0 if final == "stopped" else 1


def cmd_status(args: argparse.Namespace) -> int:
    config = AgentConfig.load(args.state_dir)
    key = load_host_key(args.state_dir)
    public = key.export_public_key("openssh").decode().split()[:2]
    fingerprint = key.convert_to_public().get_fingerprint("sha256")
    data = {
        "site": config.site_id,
        "relay": config.relay_url,
        "relay_pin": config.relay_pin,
        "host_key": " ".join(public),
        "host_key_sha256": fingerprint,
        **config.allowlist.to_json(),
    }
    emit(data, args.json, "\n".join(f"{k}: {v}" for k, v in data.items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mssp-agent",
        description="The mssp client-site agent: dials out to the relay and forwards only to "
        "allowlisted hosts and ports. It executes nothing.",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_DIR,
        help=f"where the key and config live (default {DEFAULT_DIR})",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "join",
        help="enrol with a join token",
        description="Enrol with a "
        "join token from `mssp site enroll`. Use '-' to read it from stdin.",
    )
    p.add_argument("token", help="the join token, or - to read it from stdin")
    p.add_argument(
        "--network",
        action="append",
        required=True,
        metavar="CIDR",
        help="a network the core may reach through this agent (repeatable)",
    )
    p.add_argument(
        "--port",
        action="append",
        type=int,
        metavar="PORT",
        help=f"an allowed port (repeatable; default {', '.join(map(str, DEFAULT_PORTS))})",
    )
    p.add_argument("--force", action="store_true", help="replace an existing enrolment")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(fn=cmd_join)
    p = sub.add_parser("run", help="keep the link to the relay (SIGTERM drains, then stops)")
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="seconds open sessions may finish after SIGTERM (default 30)",
    )
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("status", help="show this agent's enrolment")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(fn=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_guarded(lambda: args.fn(args))


if __name__ == "__main__":
    raise SystemExit(main())
