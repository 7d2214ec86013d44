"""Measuring one tool invocation: wall time, CPU of the whole process tree (user+sys, daemonised
helpers included), largest process RSS, and the sampled peak memory (PSS) of the tree.

The bench process makes itself a child subreaper, so a helper that detaches (an OpenSSH
ControlPersist master) is re-parented here, killed after the tool exits (it is ours) and reaped:
its CPU lands in RUSAGE_CHILDREN too. Each tool runs as a session leader; its tree is every
process of that session plus the subreaped orphans.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

PR_SET_CHILD_SUBREAPER = 36
SAMPLE_INTERVAL = 0.2
#: long-lived children of the bench (the sshd) that are never part of a tool's tree
KEEP: set[int] = set()


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


@dataclass(frozen=True)
class Measured:
    """One invocation."""

    wall: float
    cpu: float
    """user+sys seconds of the tree."""
    max_rss_mb: float
    """Largest single process (ru_maxrss)."""
    peak_pss_mb: float
    """Sampled peak of the summed PSS of the tree (every 0.2 s; 0 if it ended first)."""
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False


def _proc_stat(pid: str) -> tuple[int, int] | None:
    """(ppid, session id) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw.rsplit(b")", 1)[1].split()
    return int(fields[1]), int(fields[3])


def tree_members(session: int) -> list[int]:
    """Processes of the tool's session, plus orphans re-parented to this process."""
    me = os.getpid()
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = _proc_stat(name)
        if stat is None:
            continue
        ppid, sid = stat
        pid = int(name)
        if pid in KEEP:
            continue
        if sid == session or (ppid == me and pid != session and sid != os.getsid(0)):
            members.append(pid)
    return members


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class _Sampler(threading.Thread):
    def __init__(self, session: int) -> None:
        super().__init__(daemon=True)
        self.session = session
        self.peak_kb = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(SAMPLE_INTERVAL):
            total = sum(pss_kb(pid) for pid in tree_members(self.session))
            self.peak_kb = max(self.peak_kb, total)


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cleanup(session: int, known: set[int]) -> None:
    """Kill and reap what the tool left behind (its session, orphans given to us)."""
    leftovers = [p for p in tree_members(session) if p not in known]
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 3
    pending = set(leftovers)
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not our child: it is gone or someone else reaps it
                if _proc_stat(str(pid)) is None:
                    pending.discard(pid)
                continue
            if done:
                pending.discard(pid)
        time.sleep(0.02)
    for pid in pending:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def _drain(stream: IO[bytes] | None, into: dict[str, bytes], name: str) -> None:
    if stream is not None:
        into[name] = stream.read()
        stream.close()


def run_measured(
    argv: list[str],
    *,
    env: dict[str, str],
    timeout: float,
    cwd: Path | None = None,
    keep: set[int] | None = None,
    cleanup: bool = True,
) -> Measured:
    """Run ``argv`` to its end (or ``timeout``), measuring it. ``keep``: pids not to kill."""
    cpu0 = _cpu_children()
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    sampler = _Sampler(proc.pid)
    sampler.start()
    chunks: dict[str, bytes] = {}
    readers = [
        threading.Thread(target=_drain, args=(stream, chunks, name), daemon=True)
        for name, stream in (("out", proc.stdout), ("err", proc.stderr))
    ]
    for reader in readers:
        reader.start()
    timed_out = False
    deadline = start + timeout
    while True:
        # wait4, not Popen.wait: its rusage is this tool's own (ru_maxrss per invocation)
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline and not timed_out:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.002)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    sampler.stop.set()
    sampler.join()
    if cleanup:
        _cleanup(proc.pid, keep or set())
    for reader in readers:
        reader.join(timeout=10)
    cpu = _cpu_children() - cpu0
    max_rss = usage.ru_maxrss / 1024
    out, err = chunks.get("out", b""), chunks.get("err", b"")
    return Measured(
        wall=wall,
        cpu=cpu,
        max_rss_mb=max_rss,
        peak_pss_mb=sampler.peak_kb / 1024,
        returncode=proc.returncode,
        stdout=out.decode(errors="replace"),
        stderr=err.decode(errors="replace"),
        timed_out=timed_out,
    )
