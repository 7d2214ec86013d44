"""Summarise a `clients/mssp_warm.py --timeline FILE` (diagnosis of the warm engine's rounds):

    python3 bench/fleet/timeline.py FILE

Per timed run: how long each host's remote work took (inside run_host), how many hosts worked at
once on average and every 50 ms (gaps between rounds of the fork limit show as dips), how long a
finished host waited for its recorded state (run_host end -> final HostStateChanged), and the
state writer's transactions (writes per transaction, durations).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict


def main(path: str) -> None:
    runs: dict[tuple[int, int], list[dict]] = defaultdict(list)
    with open(path) as rows:
        for line in rows:
            row = json.loads(line)
            runs[(row.get("pid", 0), row["run"])].append(row)
    for (pid, run), rows in sorted(runs.items()):
        hosts = [r for r in rows if r["kind"] == "host"]
        commits = [r for r in rows if r["kind"] == "commit"]
        final = {
            r["host"]: r["t0"]
            for r in rows
            if r["kind"].startswith("event:HostStateChanged:")
            and r["kind"] != ("event:HostStateChanged:running")
        }
        if not hosts:
            continue
        first, last = min(h["t0"] for h in hosts), max(h["t1"] for h in hosts)
        work = [h["t1"] - h["t0"] for h in hosts]
        wait = [final[h["host"]] - h["t1"] for h in hosts if h["host"] in final]
        ended = [r["t0"] for r in rows if r["kind"].startswith("event:RunFinished")]
        print(
            f"process {pid} run {run}: hosts worked {first:.3f}-{last:.3f} s, run finished at "
            f"{ended[0] if ended else float('nan'):.3f} s"
        )
        print(
            f"  remote work per host: median {1000 * statistics.median(work):.0f} ms; "
            f"hosts at work on average {sum(work) / (last - first):.0f}"
        )
        if wait:
            print(
                f"  remote work done -> state recorded: median {1000 * statistics.median(wait):.0f}"
                f" ms, max {1000 * max(wait):.0f} ms"
            )
        at_work, t = [], 0.0
        while t < last:
            at_work.append(sum(1 for h in hosts if h["t0"] <= t < h["t1"]))
            t += 0.05
        print(f"  hosts at work every 50 ms: {at_work}")
        spans = [1000 * (c["t1"] - c["t0"]) for c in commits]
        print(
            f"  {len(commits)} transactions, writes in each: {[c.get('size', 0) for c in commits]}"
        )
        if spans:
            print(f"  transaction ms: median {statistics.median(spans):.1f}, max {max(spans):.1f}")


if __name__ == "__main__":
    main(sys.argv[1])
