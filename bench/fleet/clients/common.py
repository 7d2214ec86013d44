"""What every bench client shares: its arguments, timing one run in-process, and its one-line
JSON report on stdout (the bench reads nothing else)."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from typing import Any


def arguments(extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts-file", required=True, help="one address per line")
    parser.add_argument("--key", required=True, help="client private key file")
    parser.add_argument("--known-hosts", required=True)
    parser.add_argument("--user", default="root")
    parser.add_argument("--command", default="echo ok")
    parser.add_argument("--mode", choices=("cold", "warm"), default="cold")
    parser.add_argument("--runs", type=int, default=3, help="timed runs on open connections")
    if extra:
        extra(parser)
    return parser.parse_args()


def hosts(args: argparse.Namespace) -> list[str]:
    with open(args.hosts_file) as f:
        return [line.strip() for line in f if line.strip()]


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Timer:
    """Wall and CPU (this process, all threads) of one block."""

    def __enter__(self) -> Timer:
        self.cpu0, self.t0 = cpu_self(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.cpu = cpu_self() - self.cpu0

    def as_dict(self, ok: int) -> dict[str, Any]:
        return {"wall": round(self.wall, 4), "cpu": round(self.cpu, 4), "ok": ok}


def report(**fields: Any) -> None:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    json.dump({**fields, "max_rss_mb": round(rss, 1)}, sys.stdout)
    sys.stdout.write("\n")
