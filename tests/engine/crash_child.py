"""The core process of the crash test: starts (or resumes) a run over N hosts of a test SSH server,
and SIGKILLs itself the Nth time the engine reaches a named point.

Run as ``python tests/engine/crash_child.py start|resume ...``; settings come from MSSP_HOME and
MSSP_DATABASE_URL like the real CLI. Prints one JSON line: the run id, and the summary if the run
ended.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mssp import db
from mssp.config import load_settings
from mssp.connections import ConnectionManager, Credentials
from mssp.engine import Engine, RunOptions, StaticHosts
from mssp.events import EventBus
from mssp.inventory import HostRecord
from mssp.tasks.base import Param, Plan, Task, TaskContext, TaskResult, register


@register
class CountedTask(Task):
    """Appends the host's name to its own file (so executions can be counted), then prints it."""

    name = "test.counted"
    params = (Param("dir", str), Param("seconds", float, default=0.05))

    async def check(self, ctx: TaskContext) -> Plan:
        return Plan(changes=("append",))

    async def apply(self, ctx: TaskContext, plan: Plan) -> TaskResult:
        path = shlex.quote(f"{self.params['dir']}/{ctx.host.name}")
        cmd = (
            f"echo start $(date +%s.%N) >> {path}; sleep {self.params['seconds']}; "
            f"echo end $(date +%s.%N) >> {path}; echo ran {ctx.host.name}"
        )
        return TaskResult.changed(command=await ctx.run(cmd, check=True))


class Keys:
    def __init__(self, client_key: str, host_key: str) -> None:
        self.client_key, self.host_key = client_key, host_key

    async def resolve(self, host: HostRecord) -> Credentials:
        return Credentials(private_key=self.client_key)

    async def pinned(self, host: HostRecord) -> list[str]:
        return [self.host_key]

    async def pin(self, host: HostRecord, key: object) -> None:
        raise RuntimeError("unexpected new host key")


def crash_hook(point: str, after: int):
    seen = {"n": 0}

    def hook(name: str) -> None:
        if name == point:
            seen["n"] += 1
            if seen["n"] == after:
                os.kill(os.getpid(), signal.SIGKILL)

    return hook


async def main(args: argparse.Namespace) -> None:
    settings = load_settings()
    keys = Keys(Path(args.client_key).read_text(), args.host_key)
    hosts = [
        HostRecord(
            client=f"c{i % 5}",
            site="s",
            name=f"h{i:02d}",
            address="127.0.0.1",
            port=args.port,
            username=args.user,
        )
        for i in range(args.count)
    ]
    await db.init(settings, run_migrations=False)
    manager = ConnectionManager(settings, credentials=keys, host_keys=keys, connect_attempts=1)
    hook = crash_hook(args.crash_at, args.crash_after) if args.crash_at else None
    engine = Engine(
        settings, connections=manager, bus=EventBus(), hosts=StaticHosts(hosts), hook=hook
    )
    try:
        await engine.start()
        if args.mode == "start":
            run_id = await engine.start_run(
                "test.counted",
                "all",
                params={"dir": args.dir, "seconds": args.seconds},
                options=RunOptions(forks=args.forks, per_client=args.forks),
            )
        else:
            run_id = await engine.resume(args.run_id)
        print(json.dumps({"run_id": run_id}), flush=True)
        summary = await engine.wait(run_id)
        print(
            json.dumps({"run_id": run_id, "state": summary.state, "counts": dict(summary.counts)}),
            flush=True,
        )
    finally:
        await engine.aclose()
        await manager.aclose()
        await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["start", "resume"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--host-key", required=True)
    parser.add_argument("--client-key", required=True, help="file holding the private key")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--forks", type=int, default=10)
    parser.add_argument("--run-id", type=int)
    parser.add_argument("--seconds", type=float, default=0.05)
    parser.add_argument("--crash-at", default="")
    parser.add_argument("--crash-after", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
