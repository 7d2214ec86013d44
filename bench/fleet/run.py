"""The fleet benchmark: `echo ok` over N loopback SSH hosts, cold and warm, mssp beside plain
asyncssh, Ansible raw, pyinfra, parallel-ssh and Fabric, all in one run; prints a table.

    .venv/bin/python bench/fleet/run.py --sizes 50,200,500 --repeat 3

Needs root (it re-runs itself in a private network + mount namespace, see arena.py) and the
competitors' virtualenv (requirements-bench.txt; --tools-python). Method: README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from arena import enter_namespace, prepare_namespace, start_arena, stop_arena
from daemon import VARIANTS, Daemon
from measure import KEEP, Measured, become_subreaper, run_measured
from setup_tools import (
    PROJECT_PY,
    MsspVariant,
    Setup,
    cold_command,
    count_ok,
    prepare,
    warm_command,
)

COLD_TOOLS = (
    "mssp",
    "mssp-daemon",
    "mssp-pooled",
    "asyncssh",
    "pyinfra",
    "parallel-ssh",
    "fabric",
    "ansible",
)
DAEMONS: dict[str, Daemon] = {}
"""The running `mssp daemon` of each hand-off tool (daemon.py), started on first use."""
WARM_TOOLS = ("mssp", "asyncssh", "parallel-ssh")
DEFAULT_TOOLS_PY = Path.home() / ".cache" / "mssp-bench" / "venv" / "bin" / "python"
SETTLE = 0.5
"""Seconds between invocations: the last sshd sessions end and are reaped (server CPU)."""


def options() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="50,200,500", help="host counts [50,200,500]")
    p.add_argument("--repeat", type=int, default=3, help="cold runs per tool and size [3]")
    p.add_argument("--warm-runs", type=int, default=5, help="timed warm runs per process [5]")
    p.add_argument("--cold", default=",".join(COLD_TOOLS), help="cold tools, in this order")
    p.add_argument("--warm", default=",".join(WARM_TOOLS), help="warm tools ('' for none)")
    p.add_argument("--tools-python", type=Path, default=DEFAULT_TOOLS_PY)
    p.add_argument("--json-out", type=Path, help="also write every measurement here")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument(
        "--warm-repeat",
        type=int,
        default=1,
        help="warm processes per tool and size, in rotating order; their runs are pooled [1]",
    )
    p.add_argument(
        "--mssp-warm-args",
        default="",
        help="extra arguments for clients/mssp_warm.py, e.g. '--experiment-no-remote-deadline'",
    )
    p.add_argument(
        "--mssp-src",
        help="import mssp from this source tree (PYTHONPATH) in every mssp invocation, e.g. a\n"
        "`git archive HEAD mssp | tar -x -C DIR` export: a fixed snapshot while the checkout\n"
        "changes under other engineers' edits",
    )
    p.add_argument(
        "--mssp-variant",
        action="append",
        default=[],
        metavar="NAME[@SRC][=ARGS]",
        help="also time mssp warm as tool mssp:NAME, importing mssp from the source tree SRC\n"
        "(e.g. an exported older commit, for an interleaved before/after) and passing ARGS to\n"
        "mssp_warm.py; repeatable. Example: --mssp-variant bare=--experiment-no-remote-deadline",
    )
    p.add_argument(
        "--asyncssh-limit",
        type=int,
        default=0,
        help="also time warm asyncssh with at most N commands at once, as tool asyncssh:N\n"
        "(the floor under mssp's fork limit; mssp's default forks: 100)",
    )
    p.add_argument(
        "--mssp-warm-prefix",
        default="",
        help="command put before every mssp warm process (a profiler: 'py-spy record -o F --')",
    )
    p.add_argument(
        "--server-cost",
        action="store_true",
        help="also measure sshd CPU per command: plain vs mssp-wrapped (clients/server_cost.py)",
    )
    args = p.parse_args()
    args.sizes = tuple(int(s) for s in args.sizes.split(","))
    args.cold = tuple(t for t in args.cold.split(",") if t)
    args.warm = tuple(t for t in args.warm.split(",") if t)
    for tool in args.cold:
        if tool not in COLD_TOOLS:
            p.error(f"unknown cold tool {tool!r}")
    for tool in args.warm:
        if tool not in WARM_TOOLS:
            p.error(f"unknown warm tool {tool!r}")
    args.variants = {}
    for spec in args.mssp_variant:
        head, _, extra = spec.partition("=")
        name, _, src = head.partition("@")
        if not name or f"mssp:{name}" in args.variants:
            p.error(f"bad or repeated --mssp-variant {spec!r}")
        src = str(Path(src).resolve()) if src else ""
        if src and not (Path(src) / "mssp" / "__init__.py").exists():
            p.error(f"--mssp-variant {spec!r}: {src}/mssp is not an mssp source tree")
        args.variants[f"mssp:{name}"] = MsspVariant(src or None, tuple(shlex.split(extra)))
        args.warm += (f"mssp:{name}",)
    if args.asyncssh_limit:
        args.warm += (f"asyncssh:{args.asyncssh_limit}",)
    if args.mssp_warm_args or args.mssp_warm_prefix:
        base = args.variants.get("mssp", MsspVariant(None, ()))
        args.variants["mssp"] = MsspVariant(base.src, tuple(shlex.split(args.mssp_warm_args)))
    args.prefix = tuple(shlex.split(args.mssp_warm_prefix))
    if args.mssp_src:
        args.mssp_src = str(Path(args.mssp_src).resolve())
        if not (Path(args.mssp_src) / "mssp" / "__init__.py").exists():
            p.error(f"--mssp-src {args.mssp_src}: no mssp package there")
    if args.warm_repeat < 1:
        p.error("--warm-repeat must be >= 1")
    if max(args.sizes) > 250 * 254 or min(args.sizes) < 1 or args.repeat < 1:
        p.error("sizes must be 1..63500, repeat >= 1")
    return args


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine_facts() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "mem_total_mb": int(Path("/proc/meminfo").read_text().split()[1]) // 1024,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def cold_once(setup: Setup, tool: str, n: int, index: int) -> dict[str, Any]:
    daemon = None
    if tool in VARIANTS:  # `mssp exec` handed to a running daemon: same command, its env
        daemon = DAEMONS.get(tool)
        if daemon is None:
            daemon = DAEMONS[tool] = Daemon(setup, tool)
            daemon.start()
        argv, _ = cold_command(setup, "mssp", n, setup.scratch)
        env = daemon.client_env
    else:
        argv, env = cold_command(setup, tool, n, setup.scratch / f"cp-{tool}-{n}-{index}")
    server0 = setup.arena.server_cpu()
    daemon_cpu0 = daemon.cpu() if daemon else 0.0
    m = run_measured(argv, env=env, timeout=60 + 0.4 * n, cwd=setup.scratch)
    if daemon is not None:  # the daemon did the work: its CPU and memory count
        m = replace(
            m,
            cpu=m.cpu + daemon.cpu() - daemon_cpu0,
            peak_pss_mb=m.peak_pss_mb + daemon.pss_mb(),
        )
    time.sleep(SETTLE)
    ok = _ok("mssp" if daemon else tool, m)
    result = _row(m, ok) | {"server_cpu": round(setup.arena.server_cpu() - server0, 3)}
    if ok != n:
        log(
            f"  {tool} N={n}: only {ok}/{n} ok (rc {m.returncode}) "
            f"stdout: {m.stdout.strip()[-400:]!r} stderr: {m.stderr.strip()[-400:]!r}"
        )
    return result


def warm_process(
    setup: Setup, tool: str, n: int, runs: int, args: argparse.Namespace
) -> dict[str, Any]:
    variant = args.variants.get(tool)
    name, _, limit = tool.partition(":")
    argv, env = warm_command(setup, name, n, runs, variant)
    if name == "asyncssh" and limit:
        argv += ["--limit", limit]
    if variant is not None and args.prefix:
        argv = [*args.prefix, *argv]
    server0 = setup.arena.server_cpu()
    m = run_measured(argv, env=env, timeout=120 + 0.5 * n * (runs + 1), cwd=setup.scratch)
    time.sleep(SETTLE)
    try:
        report = json.loads(m.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        log(f"  warm {tool} N={n} gave no report (rc {m.returncode}): {m.stderr.strip()[-500:]}")
        return {"process": _row(m, 0), "runs": []}
    bad = [r["ok"] for r in report["runs"] if r["ok"] != n]
    if bad:
        log(f"  warm {tool} N={n}: runs with fewer than {n} ok: {bad}")
    return {
        "process": _row(m, n if not bad else min(bad)),
        "server_cpu": round(setup.arena.server_cpu() - server0, 3),
        **report,
    }


def _ok(tool: str, m: Measured) -> int:
    try:
        # pyinfra prints its per-host output on stderr
        return count_ok(tool, m.stdout + "\n" + m.stderr if tool == "pyinfra" else m.stdout)
    except (ValueError, KeyError, IndexError):
        return 0


def _row(m: Measured, ok: int) -> dict[str, Any]:
    return {
        "wall": round(m.wall, 3),
        "cpu": round(m.cpu, 3),
        "max_rss_mb": round(m.max_rss_mb, 1),
        "peak_pss_mb": round(m.peak_pss_mb, 1),
        "ok": ok,
        "rc": m.returncode,
        "timed_out": m.timed_out,
    }


def bench(setup: Setup, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"cold": {}, "warm": {}}
    for tool in args.cold:  # untimed: bytecode cache and page cache filled, as for a user
        cold_once(setup, tool, min(args.sizes), -1)
    for n in args.sizes:
        if "mssp-pooled" in args.cold:  # untimed: the daemon's pool holds every host of this size
            cold_once(setup, "mssp-pooled", n, -1)
        for rep in range(args.repeat):
            # rotate the order each repetition so that drift of the machine's load is shared
            order = _rotated(args.cold, rep)
            for tool in order:
                row = cold_once(setup, tool, n, rep)
                results["cold"].setdefault(tool, {}).setdefault(str(n), []).append(row)
                log(
                    f"cold {tool:<12} N={n:<4} #{rep + 1}: {row['wall']:.2f}s cpu {row['cpu']:.2f}s"
                )
        for rep in range(args.warm_repeat):
            order = _rotated(args.warm, rep)
            for tool in order:
                row = warm_process(setup, tool, n, args.warm_runs, args)
                walls = [r["wall"] for r in row["runs"]]
                log(f"warm {tool:<12} N={n:<4} #{rep + 1}: runs {walls}")
                into = results["warm"].setdefault(tool, {})
                if str(n) not in into:
                    into[str(n)] = dict(row, processes=[row["process"]])
                else:  # one more process of the same tool: pool its runs
                    into[str(n)]["runs"].extend(row["runs"])
                    into[str(n)]["processes"].append(row["process"])
    return results


def _rotated(tools: tuple[str, ...], by: int) -> tuple[str, ...]:
    """``tools`` rotated left by ``by`` (so that each repetition starts with another tool)."""
    if not tools:
        return tools
    by %= len(tools)
    return tools[by:] + tools[:by]


def server_cost(setup: Setup, n: int) -> dict[str, Any]:
    argv = [
        str(PROJECT_PY), str(Path(__file__).resolve().parent / "clients" / "server_cost.py"),
        "--hosts-file", str(setup.hosts_file(n)), "--key", str(setup.arena.client_key),
        "--known-hosts", str(setup.arena.known_hosts), "--sshd-pid", str(setup.arena.pid),
    ]  # fmt: skip
    m = run_measured(argv, env=setup.base_env(), timeout=120 + 0.5 * n, cwd=setup.scratch)
    try:
        report = json.loads(m.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        log(f"server cost gave no report: {m.stderr.strip()[-500:]}")
        return {}
    for name, row in report.items():
        log(f"server cost N={n} {name}: {row['sshd_ms_per_command']} ms sshd CPU per command")
    return report


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _cell(rows: list[dict[str, Any]], n: int) -> str:
    good = [r for r in rows if r["ok"] == n]
    text = (
        f"{median([r['wall'] for r in rows]):.2f} s · cpu {median([r['cpu'] for r in rows]):.2f}"
        f" · {median([r['peak_pss_mb'] or r['max_rss_mb'] for r in rows]):.0f} MB"
    )
    if len(good) != len(rows):
        text += f" ({len(rows) - len(good)} run(s) incomplete)"
    return text


def table(results: dict[str, Any], sizes: tuple[int, ...]) -> str:
    head = "| tool | " + " | ".join(f"N={n}" for n in sizes) + " |"
    lines = [head, "|---" * (len(sizes) + 1) + "|"]
    names = {
        "mssp": "mssp exec (CLI)",
        "mssp-daemon": "mssp exec → running daemon, new connections",
        "mssp-pooled": "mssp exec → running daemon, its pooled connections",
        "asyncssh": "plain asyncssh gather",
        "pyinfra": "pyinfra exec",
        "parallel-ssh": "parallel-ssh",
        "fabric": "Fabric ThreadingGroup",
        "ansible": "Ansible -m raw -f 50",
    }
    for tool, per_size in results["cold"].items():
        cells = [_cell(per_size.get(str(n), []), n) if str(n) in per_size else "-" for n in sizes]
        lines.append(f"| cold: {names[tool]} | " + " | ".join(cells) + " |")
    warm_names = {
        "mssp": "mssp Engine, pooled",
        "asyncssh": "asyncssh, open",
        "parallel-ssh": "parallel-ssh, open",
    }
    for tool, per_size in results["warm"].items():
        name, _, variant = tool.partition(":")
        label = warm_names[name] + (f" [{variant}]" if variant else "")
        if name == "asyncssh" and variant:
            label = f"asyncssh, open, at most {variant} at once"
        cells = []
        for n in sizes:
            row = per_size.get(str(n))
            if not row or not row["runs"]:
                cells.append("-")
                continue
            rows = [dict(r, peak_pss_mb=0, max_rss_mb=row["max_rss_mb"]) for r in row["runs"]]
            cells.append(_cell(rows, n))
        lines.append(f"| warm: {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(results: dict[str, Any], sizes: tuple[int, ...]) -> list[str]:
    out = []
    cold = results["cold"]

    def med(tool: str, n: int, key: str) -> float:
        return median([r[key] for r in cold.get(tool, {}).get(str(n), [])])

    for n in sizes:
        for mssp in ("mssp", "mssp-daemon"):
            if mssp in cold and "asyncssh" in cold:
                wall = med(mssp, n, "wall") / med("asyncssh", n, "wall")
                cpu = med(mssp, n, "cpu") / med("asyncssh", n, "cpu")
                out.append(
                    f"N={n}: {mssp} cold / plain asyncssh cold: wall {wall:.2f} (goal <= 1.15), "
                    f"client CPU {cpu:.2f}"
                )
            if mssp in cold and "ansible" in cold:
                wall = med("ansible", n, "wall") / med(mssp, n, "wall")
                cpu = med("ansible", n, "cpu") / med(mssp, n, "cpu")
                out.append(
                    f"N={n}: Ansible raw / {mssp} cold: wall {wall:.1f}x (goal >= 5x), "
                    f"client CPU {cpu:.1f}x"
                )
        for tool, per_size in results["warm"].items():
            warm = per_size.get(str(n))
            if not tool.startswith("mssp") or not warm or not warm["runs"]:
                continue
            w = median([r["wall"] for r in warm["runs"]])
            goal = " (goal < 1 s)" if n == 500 else ""
            out.append(f"N={n}: {tool} warm median {w:.3f} s over {len(warm['runs'])} runs{goal}")
    if len(sizes) > 1:
        lo, hi = min(sizes), max(sizes)
        out.append(f"\nper host, from N={lo} to N={hi} (client CPU = fixed + per-host slope):")
        for tool in cold:
            slope = (med(tool, hi, "cpu") - med(tool, lo, "cpu")) / (hi - lo)
            fixed = med(tool, lo, "cpu") - slope * lo
            server = med(tool, hi, "server_cpu") / hi
            out.append(
                f"  {tool:<13} client {1000 * slope:5.1f} ms/host + {fixed:5.2f} s fixed;"
                f" sshd {1000 * server:5.1f} ms/host"
            )
    return out


def main() -> None:
    enter_namespace(sys.argv)
    args = options()
    if not args.tools_python.exists() and set(args.cold) & {"pyinfra", "parallel-ssh", "fabric"}:
        sys.exit(f"{args.tools_python} is missing: install requirements-bench.txt (README.md)")
    scratch = Path(tempfile.mkdtemp(prefix="mssp-fleet-bench-"))
    facts = machine_facts()
    log(f"machine: {facts}")
    sshd = None
    try:
        prepare_namespace(scratch)
        become_subreaper()
        arena, sshd = start_arena(scratch / "arena", max(args.sizes))
        KEEP.add(sshd.pid)
        setup = Setup(scratch, arena, args.sizes, args.tools_python, args.mssp_src)
        log("preparing inventories and the mssp home (pinning host keys)")
        prepare(setup)
        results = bench(setup, args)
        if args.server_cost:
            results["server_cost"] = server_cost(setup, max(args.sizes))
    finally:
        for daemon in DAEMONS.values():
            daemon.stop()
        if sshd is not None:
            stop_arena(sshd)
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    facts["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    text = table(results, args.sizes)
    print(f"\nmachine: {json.dumps(facts)}\n")
    print(text)
    print("\n" + "\n".join(verdicts(results, args.sizes)))
    for name, row in results.get("server_cost", {}).items():
        print(
            f"sshd CPU per command on an open connection, {name}: {row['sshd_ms_per_command']} ms"
        )
    if args.json_out:
        args.json_out.write_text(json.dumps({"facts": facts, "results": results}, indent=1))


if __name__ == "__main__":
    main()
