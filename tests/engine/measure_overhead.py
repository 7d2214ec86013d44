"""Measure the engine's own overhead (not a test): `python tests/engine/measure_overhead.py [URL]`.

For N = 50, 200, 500 hosts on one in-process SSH server: a cold `echo ok` run (new connections),
a warm one (pooled), a plain asyncio.gather of conn.run over the same pooled connections, and a
run of a task whose check finds nothing to do, which measures only the engine: selection,
waves, state commits (running before dispatch, results), host locks, events, summary.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mssp import db
from mssp.config import load_settings
from mssp.tasks.base import Plan, Task, TaskContext, TaskResult, register
from tests.engine.conftest import engine_for, make_hosts
from tests.sshserver import ssh_test_server


@register
class NoopTask(Task):
    name = "measure.noop"

    async def check(self, ctx: TaskContext) -> Plan:
        return Plan()

    async def apply(self, ctx: TaskContext, plan: Plan) -> TaskResult:
        raise AssertionError("nothing to apply")


async def timed(engine, task: str, params: dict) -> tuple[float, int, dict]:
    before = engine.writer.transactions
    started = time.perf_counter()
    run_id = await engine.start_run(task, "all", params=params)
    summary = await engine.wait(run_id)
    return time.perf_counter() - started, engine.writer.transactions - before, dict(summary.counts)


async def main(url: str) -> None:
    env = {"MSSP_HOME": tempfile.mkdtemp()}
    if url:
        env["MSSP_DATABASE_URL"] = url
    settings = load_settings(env).replace(forks=100, per_client_limit=100)
    await db.init(settings)
    async with ssh_test_server() as srv:
        for n in (50, 200, 500):
            hosts = make_hosts(srv, n, clients=[f"c{i}" for i in range(10)])
            async with engine_for(settings, srv, hosts) as (engine, _):
                engine.connections.max_open = 5000  # keep all N pooled
                cold = await timed(engine, "command", {"cmd": "echo ok"})
                warm = await timed(engine, "command", {"cmd": "echo ok"})
                noop = sorted([await timed(engine, "measure.noop", {}) for _ in range(3)])

                async def one(host):
                    async with engine.connections.connection(host) as conn:
                        return await conn.run("echo ok")

                started = time.perf_counter()
                await asyncio.gather(*(one(h) for h in hosts))
                plain = time.perf_counter() - started
                print(
                    f"N={n}: cold {cold[0]:.2f}s {cold[2]}  warm {warm[0]:.2f}s  "
                    f"plain pooled gather {plain:.2f}s  engine-only median {noop[1][0]:.3f}s "
                    f"({noop[1][1]} transactions) {noop[1][2]}",
                    flush=True,
                )
    await db.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else ""))
