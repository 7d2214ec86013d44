"""mssp warm: several runs of `echo ok` inside one process and one Engine, sharing one
ConnectionManager (the pool), wired exactly as `mssp exec` wires them (cli._runview.with_engine).

The first run opens the connections (cold, minus interpreter start-up); the timed runs after it
reuse them. Reads MSSP_HOME and MSSP_VAULT_PASSPHRASE like the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from typing import Any

from mssp.cli._runview import with_engine
from mssp.config import load_settings
from mssp.engine import Engine, RunOptions


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one_run(engine: Engine, target: str, command: str) -> dict[str, Any]:
    cpu0, t0 = cpu_self(), time.perf_counter()
    run_id = await engine.start_run(
        "command", target, params={"cmd": command, "become": False}, options=RunOptions()
    )
    summary = await engine.wait(run_id)
    await engine.wait_idle()
    wall, cpu = time.perf_counter() - t0, cpu_self() - cpu0
    ok = sum(1 for h in summary.hosts if h.state == "ok" and h.stdout.strip() == "ok")
    stats = engine.connections.stats  # type: ignore[attr-defined]
    return {
        "wall": round(wall, 4),
        "cpu": round(cpu, 4),
        "ok": ok,
        "handshakes": stats.handshakes,
        "reuses": stats.reuses,
        "transactions": engine.writer.transactions,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--command", default="echo ok")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--experiment-no-remote-deadline",
        action="store_true",
        help="diagnosis only: send the bare command (no sh/timeout guard) to split the engine's "
        "cost from the guard's (README, profile 2)",
    )
    args = parser.parse_args()
    if args.experiment_no_remote_deadline:
        from mssp.connectors import sshexec

        sshexec.remote_deadline = lambda command, timeout: command  # type: ignore[assignment]
    settings = load_settings()

    async def work(engine: Engine) -> int:
        first = await one_run(engine, args.target, args.command)
        runs = [await one_run(engine, args.target, args.command) for _ in range(args.runs)]
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        json.dump({"connect": first, "runs": runs, "max_rss_mb": round(rss, 1)}, sys.stdout)
        sys.stdout.write("\n")
        return 0

    sys.exit(asyncio.run(with_engine(settings, work)))


if __name__ == "__main__":
    main()
