"""What lab-made things exist on this machine, and whose lab they belong to.

The lab's names are machine-wide (namespaces ``mssp-lab-*``, veths ``mssplab*``, addresses in
198.18.0.0/15), so one namespace lab runs per machine. Before `lab up` makes anything, and when
`lab down` sweeps, this survey finds lab namespaces, veths and base-layer mounts, and the lab
directory each belongs to: from the base-layer mount point (``<lab dir>/base``) and from the
command lines of the processes inside lab namespaces (every host's supervisor names its host dir,
``<lab dir>/hosts/<key>``). An owner is *live* while its ``state.json`` exists: `lab down` from
its MSSP_HOME (or ``--force`` from anywhere) removes it. Leftovers whose owner is unknown or has
lost its record (a crashed or deleted home) are debris, removed without asking.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from mssp.errors import LabError
from mssp.lab import netns as lab_netns
from mssp.lab.baselayer import lab_mounts
from mssp.lab.layout import NETNS_PREFIX, VETH_PREFIX

HOST_DIR_PATTERN = re.compile(r"^(/.+)/hosts/s\d+(?:h\d+|win)(?:/.*)?$")


@dataclass(frozen=True)
class Survey:
    """Lab-named things on the machine and the lab directories they belong to."""

    netns: tuple[str, ...]
    veths: tuple[str, ...]
    base_mounts: tuple[str, ...]
    owners: tuple[str, ...]
    """Lab directories seen (absolute paths), whether or not they still hold a record."""

    @property
    def empty(self) -> bool:
        return not (self.netns or self.veths or self.base_mounts)

    def live_owners(self, own: Path | None = None) -> list[str]:
        """Owners other than ``own`` whose record (state.json) still exists."""
        mine = os.path.realpath(own) if own is not None else None
        return [
            o for o in self.owners if o != mine and os.path.exists(os.path.join(o, "state.json"))
        ]

    def describe(self) -> str:
        parts = list(self.netns) + list(self.veths) + [f"mount {m}" for m in self.base_mounts]
        return ", ".join(parts)


def processes_in_netns(inodes: set[int]) -> list[int]:
    """Pids (other than ours) whose network namespace is one of ``inodes``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if os.stat(f"/proc/{entry.name}/ns/net").st_ino in inodes:
                found.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def _owner_of(pid: int) -> str | None:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    for arg in argv:
        match = HOST_DIR_PATTERN.match(arg.decode(errors="replace"))
        if match:
            return match.group(1)
    return None


def survey() -> Survey:
    """Everything lab-named on the machine now (one pass over /proc)."""
    names = lab_netns.existing_lab_netns(NETNS_PREFIX)
    veths = lab_netns.existing_links(VETH_PREFIX)
    mounts = lab_mounts()
    owners = {str(Path(m).parent) for m in mounts}
    inodes = {i for i in (lab_netns.netns_inode(n) for n in names) if i is not None}
    if inodes:
        owners |= {o for o in map(_owner_of, processes_in_netns(inodes)) if o is not None}
    owners = {os.path.realpath(o) for o in owners}  # as live_owners compares them
    return Survey(tuple(names), tuple(veths), tuple(mounts), tuple(sorted(owners)))


MACHINE_LOCK = Path("/run/mssp-lab.lock")


@contextlib.asynccontextmanager
async def machine_lock(
    *, timeout: float = 120.0, say: Callable[[str], None] | None = None
) -> AsyncIterator[None]:
    """Serialise namespace-lab `up`/`down` across every MSSP_HOME on this machine.

    Without it, a `lab up` elsewhere could take a lab being built (namespaces made, no process
    or base mount yet to name its owner) for debris and remove it.
    """
    fd = os.open(MACHINE_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabError(
                        f"another `mssp lab up/down` has held {MACHINE_LOCK} for {timeout:.0f} s"
                    ) from None
                if say and not told:
                    say("waiting for another `mssp lab up/down` on this machine")
                    told = True
                await asyncio.sleep(0.1)
        yield
    finally:
        os.close(fd)
