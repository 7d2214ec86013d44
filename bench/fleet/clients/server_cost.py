"""Server-side cost of one command on an open connection: `echo ok` as plain asyncssh sends it,
and as mssp's SSH connector sends it (wrapped by mssp.connectors.sshexec.wrap_command, which adds
a remote deadline: `exec /usr/bin/timeout -s KILL N sh -c CMD`, i.e. timeout and one sh more than
plain). Measured as the bench sshd's reaped-children CPU."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import asyncssh

from mssp.connectors.sshexec import wrap_command

TIMEOUT = 120
SETTLE = 1.0


def sshd_children_cpu(pid: int) -> float:
    """CPU of everything the sshd master forked: finished (its cutime/cstime) and live
    per-connection processes with what they reaped (their utime+stime+cutime+cstime)."""
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(name)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    children: dict[int, list[int]] = {}
    for child, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(child)
    master = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(master[13]) + int(master[14])
    todo = list(children.get(pid, []))
    while todo:
        proc = todo.pop()
        ticks += stats[proc][1]
        todo.extend(children.get(proc, []))
    return ticks / os.sysconf("SC_CLK_TCK")


def options() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--hosts-file", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--known-hosts", required=True)
    p.add_argument("--sshd-pid", type=int, required=True)
    p.add_argument("--runs", type=int, default=3)
    return p.parse_args()


async def main(args: argparse.Namespace, addrs: list[str]) -> None:
    key = asyncssh.read_private_key(args.key)
    conns = await asyncio.gather(
        *(
            asyncio.wait_for(
                asyncssh.connect(
                    a, username="root", client_keys=[key], known_hosts=args.known_hosts
                ),
                TIMEOUT,
            )
            for a in addrs
        )
    )
    await asyncio.sleep(SETTLE)
    variants = {
        "plain `echo ok`": "echo ok",
        "mssp-wrapped (timeout guard)": wrap_command(
            "echo ok", env=None, become=False, username="root", timeout=600
        ).remote_command,
        "exec timeout, no probe": "exec timeout -s KILL 602 sh -c 'echo ok'",
        "plain `echo ok` (again, for the noise)": "echo ok",
    }
    out = {}
    for name, command in variants.items():
        walls, per_cmd = [], []
        for _ in range(args.runs):
            cpu0, t0 = sshd_children_cpu(args.sshd_pid), time.perf_counter()
            results = await asyncio.gather(
                *(asyncio.wait_for(c.run(command), TIMEOUT) for c in conns)
            )
            walls.append(time.perf_counter() - t0)
            await asyncio.sleep(SETTLE)  # sessions reaped
            per_cmd.append((sshd_children_cpu(args.sshd_pid) - cpu0) / len(conns))
            assert all(r.stdout.strip() == "ok" for r in results), name
        out[name] = {
            "command": command,
            "sshd_ms_per_command": round(1000 * sorted(per_cmd)[len(per_cmd) // 2], 2),
            "wall_median": round(sorted(walls)[len(walls) // 2], 3),
        }
    for c in conns:
        c.close()
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    arguments = options()
    hosts = [a.strip() for a in Path(arguments.hosts_file).read_text().splitlines() if a.strip()]
    asyncio.run(main(arguments, hosts))
