"""The engine alone: `mssp exec`'s warm path over N fake hosts, no SSH, no sshd.

Every host is a fake connector whose command takes ``--latency`` seconds of waiting and
``--client-cpu-ms`` of this process's CPU (split before and after the wait, as asyncssh spends it
sending the request and reading the reply; ~0.7 ms per command on the bench machine). The Engine
is real: a SQLite (or ``--database-url``) database in a throw-away home, the inventory imported
into it, the state writer, host locks, events, audit entries, the run summary. What is left over
the fake commands is the engine's own cost:

    .venv/bin/python bench/fleet/clients/engine_only.py --hosts 500 --runs 7

With PYTHONPATH pointing at an exported source tree it measures that tree (before/after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import tempfile
import time
from collections.abc import Mapping
from typing import Any


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def fake_factory(latency: float, cpu: float) -> Any:
    from mssp.connectors.base import CommandResult, Connector

    class FakeConnector(Connector):
        transport = "ssh"

        def __init__(self) -> None:
            self.open = False

        async def connect(self) -> None:
            self.open = True

        async def close(self) -> None:
            self.open = False

        @property
        def is_connected(self) -> bool:
            return self.open

        async def run(
            self,
            command: str,
            *,
            check: bool = False,
            timeout: float | None = None,
            stdin: str | bytes | None = None,
            env: Mapping[str, str] | None = None,
            become: bool = False,
        ) -> CommandResult:
            burn(cpu / 2)
            await asyncio.sleep(latency)
            burn(cpu / 2)
            return CommandResult(command, 0, "ok\n", "", latency)

        async def put_file(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

        async def get_file(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

    return lambda host, options, tunnel, on_new_host_key: FakeConnector()


class NoCredentials:
    async def resolve(self, host: Any) -> Any:
        from mssp.connections import Credentials

        return Credentials()


class NoPins:
    async def pinned(self, host: Any) -> list[str]:
        return []

    async def pin(self, host: Any, key: Any) -> None:
        return None


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from mssp import db
    from mssp.config import load_settings
    from mssp.connections import ConnectionManager
    from mssp.engine import Engine, RunOptions
    from mssp.events import EventBus
    from mssp.store.inventory import create_client, create_host, create_site

    home = tempfile.mkdtemp(prefix="mssp-engine-only-")
    env = {"MSSP_HOME": home}
    if args.database_url:
        env["MSSP_DATABASE_URL"] = args.database_url
    settings = load_settings(env)
    report: dict[str, Any] = {"runs": []}
    async with db.database(settings):
        for c in range(args.clients):
            await create_client(f"c{c:02d}", f"c{c:02d}")
            await create_site(f"c{c:02d}", "main")
        for i in range(args.hosts):
            address = f"10.0.{i // 250}.{i % 250 + 1}"
            await create_host(
                f"c{i % args.clients:02d}", "main", f"h{i:04d}", address=address, tags=["bench"]
            )
        manager = ConnectionManager(
            settings,
            credentials=NoCredentials(),
            host_keys=NoPins(),
            connector_factory=fake_factory(args.latency, args.client_cpu_ms / 1000),
            max_open=max(1024, args.hosts * 2),
        )
        engine = Engine(settings, connections=manager, bus=EventBus(), adopt=False)
        profiler = None
        try:
            for index in range(args.runs + 1):
                if index == 1 and args.profile:
                    import cProfile

                    profiler = cProfile.Profile()
                    profiler.enable()
                cpu0, t0 = cpu_self(), time.perf_counter()
                run_id = await engine.start_run(
                    "command", "tag:bench", params={"cmd": "echo ok"}, options=RunOptions()
                )
                started = time.perf_counter() - t0
                summary = await engine.wait(run_id)
                await engine.wait_idle()
                wall, cpu = time.perf_counter() - t0, cpu_self() - cpu0
                ok = sum(1 for h in summary.hosts if h.state == "ok" and h.stdout == "ok\n")
                if index:  # the first run opens the (fake) connections
                    row = {"wall": round(wall, 4), "cpu": round(cpu, 4), "ok": ok}
                    report["runs"].append(row | {"start_run": round(started, 4)})
        finally:
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile)
            await engine.aclose()
            await manager.aclose()
    walls = [r["wall"] for r in report["runs"]]
    cpus = [r["cpu"] for r in report["runs"]]
    report["median_wall"] = statistics.median(walls)
    report["median_cpu"] = statistics.median(cpus)
    report["transactions"] = engine.writer.transactions
    return report


def options() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--hosts", type=int, default=500)
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--runs", type=int, default=5, help="timed runs after a first, untimed one")
    p.add_argument("--latency", type=float, default=0.1, help="seconds each command waits [0.1]")
    p.add_argument(
        "--client-cpu-ms", type=float, default=0.7, help="CPU of this process per command [0.7]"
    )
    p.add_argument("--database-url", default="", help="PostgreSQL URL (default: SQLite)")
    p.add_argument("--profile", metavar="FILE", help="cProfile the timed runs into FILE")
    return p.parse_args()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(options()))))
