"""Plain asyncssh, the floor mssp is held to: connect to every host at once and run the command
(cold), or open every connection first and time gathers of runs on them (warm)."""

from __future__ import annotations

import asyncio

import asyncssh
from common import Timer, arguments, hosts, report

TIMEOUT = 120


async def connect(addr: str, args, key) -> asyncssh.SSHClientConnection:  # type: ignore[no-untyped-def]
    return await asyncio.wait_for(
        asyncssh.connect(addr, username=args.user, client_keys=[key], known_hosts=args.known_hosts),
        TIMEOUT,
    )


async def one(addr: str, args, key) -> bool:  # type: ignore[no-untyped-def]
    async with await connect(addr, args, key) as conn:
        result = await asyncio.wait_for(conn.run(args.command), TIMEOUT)
        return result.exit_status == 0 and result.stdout.strip() == "ok"


def _limit(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument(
        "--limit",
        type=int,
        default=0,
        help="warm: at most this many commands at once (mssp's forks; 0: all at once)",
    )


async def main() -> None:
    args = arguments(_limit)
    addrs = hosts(args)
    key = asyncssh.read_private_key(args.key)
    if args.mode == "cold":
        results = await asyncio.gather(*(one(a, args, key) for a in addrs), return_exceptions=True)
        report(ok=sum(r is True for r in results))
        return
    with Timer() as first:
        conns = await asyncio.gather(*(connect(a, args, key) for a in addrs))
    runs = []
    slots = asyncio.Semaphore(args.limit or len(conns))

    async def run(conn: asyncssh.SSHClientConnection) -> asyncssh.SSHCompletedProcess:
        async with slots:
            return await asyncio.wait_for(conn.run(args.command), TIMEOUT)

    for _ in range(args.runs):
        with Timer() as t:
            results = await asyncio.gather(*(run(c) for c in conns))
        runs.append(t.as_dict(sum(r.stdout.strip() == "ok" for r in results)))
    for conn in conns:
        conn.close()
    await asyncio.gather(*(c.wait_closed() for c in conns))
    report(connect=first.as_dict(len(conns)), runs=runs)


if __name__ == "__main__":
    asyncio.run(main())
