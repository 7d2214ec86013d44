"""mssp warm: several runs of `echo ok` inside one process and one Engine, sharing one
ConnectionManager (the pool), wired exactly as `mssp exec` wires them (cli._runview.with_engine).

The first run opens the connections (cold, minus interpreter start-up); the timed runs after it
reuse them. Reads MSSP_HOME and MSSP_VAULT_PASSPHRASE like the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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


class Timeline:
    """Diagnosis: host work spans (around run_host), commits (around the writer's attempts) and
    engine events, in perf_counter seconds; wraps engine internals of this process only."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, str, float, float, int]] = []
        self.on = False

    def install(self, engine: Engine) -> None:
        from mssp.engine import drive

        run_host = drive.run_host

        async def timed_host(work: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await run_host(work)
            finally:
                if self.on:
                    self.marks.append(("host", work.host.full_name, t0, time.perf_counter(), 0))

        drive.run_host = timed_host  # type: ignore[assignment]
        writer = engine.writer
        attempt = writer._attempt

        async def timed_attempt(batch: Any, *, attempts: int) -> Any:
            t0 = time.perf_counter()
            try:
                return await attempt(batch, attempts=attempts)
            finally:
                if self.on:
                    self.marks.append(("commit", "", t0, time.perf_counter(), len(batch)))

        writer._attempt = timed_attempt  # type: ignore[method-assign]

        def seen(event: Any) -> None:
            if self.on:
                kind = type(event).__name__
                host = getattr(event, "host", "")
                state = getattr(event, "state", "")
                now = time.perf_counter()
                self.marks.append((f"event:{kind}:{state}", host, now, now, 0))

        publish = engine.bus.publish

        def publishing(event: Any) -> None:
            seen(event)
            publish(event)

        engine.bus.publish = publishing  # type: ignore[method-assign]

    def dump(self, path: str, run: int, t0: float) -> None:
        with open(path, "a") as out:
            for kind, host, a, b, size in self.marks:
                row = {"pid": os.getpid(), "run": run, "kind": kind, "host": host}
                row |= {"t0": a - t0, "t1": b - t0}
                if size:
                    row["size"] = size
                out.write(json.dumps(row) + "\n")
        self.marks.clear()


TIMELINE: Timeline | None = None
TIMELINE_FILE = ""


async def one_run(engine: Engine, target: str, command: str, index: int = -1) -> dict[str, Any]:
    if TIMELINE is not None:
        TIMELINE.on = index >= 0
    cpu0, t0 = cpu_self(), time.perf_counter()
    run_id = await engine.start_run(
        "command", target, params={"cmd": command, "become": False}, options=RunOptions()
    )
    summary = await engine.wait(run_id)
    await engine.wait_idle()
    wall, cpu = time.perf_counter() - t0, cpu_self() - cpu0
    ok = sum(1 for h in summary.hosts if h.state == "ok" and h.stdout.strip() == "ok")
    if TIMELINE is not None and TIMELINE.on:
        TIMELINE.dump(TIMELINE_FILE, index, t0)
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
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="diagnosis only: cProfile the timed runs (not the first) into FILE (pstats format)",
    )
    parser.add_argument(
        "--timeline",
        metavar="FILE",
        help="diagnosis only: write when each host's remote work ran and each state commit\n"
        "happened (JSON lines, seconds since the run started) for the timed runs",
    )
    args = parser.parse_args()
    if args.experiment_no_remote_deadline:
        from mssp.connectors import sshexec

        sshexec.remote_deadline = lambda command, timeout, **_: command  # type: ignore[assignment]
    settings = load_settings()
    global TIMELINE, TIMELINE_FILE
    if args.timeline:
        TIMELINE, TIMELINE_FILE = Timeline(), args.timeline

    async def work(engine: Engine) -> int:
        if TIMELINE is not None:
            TIMELINE.install(engine)
        first = await one_run(engine, args.target, args.command)
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        runs = [await one_run(engine, args.target, args.command, i) for i in range(args.runs)]
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        json.dump({"connect": first, "runs": runs, "max_rss_mb": round(rss, 1)}, sys.stdout)
        sys.stdout.write("\n")
        return 0

    sys.exit(asyncio.run(with_engine(settings, work)))


if __name__ == "__main__":
    main()
