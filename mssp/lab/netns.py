"""Site networks: one network namespace per site, a veth to the core for direct sites, nothing else.

A direct site's routing only lets TCP from port 22 (sshd's replies) and 5986 (the simulated
Windows host's WinRM replies) leave the site: the rule
table's "lookup main" is replaced by "ipproto tcp sport 22 lookup main", so a lab host cannot open
a connection to the machine's services behind the veth (netfilter and tc actions are not available
on these machines). IPv6 link-local addresses are never generated on the veths. Routes carry
``quickack 1`` (FIELD-NOTES §2: removes ~40 ms delayed-ACK stalls).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from mssp.errors import LabError
from mssp.lab.layout import VETH_PREFIX, WINRM_PORT, SitePlan

RUN_NETNS = Path("/run/netns")


async def ip_batch(commands: list[str], *, netns: str | None = None, force: bool = False) -> str:
    """Run `ip -batch -` (in a namespace with -n); LabError with ip's message on failure."""
    args = ["ip"]
    if netns:
        args += ["-n", netns]
    if force:
        args.append("-force")
    args += ["-batch", "-"]
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate("\n".join(commands).encode() + b"\n"), 30)
    if proc.returncode != 0 and not force:
        where = f" in {netns}" if netns else ""
        raise LabError(f"ip{where} failed: {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")


def run_netns_is_mount() -> bool:
    target = str(RUN_NETNS)
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == target for line in f)
    except OSError:
        return False


def netns_inode(name: str) -> int | None:
    try:
        return os.stat(RUN_NETNS / name).st_ino
    except FileNotFoundError:
        return None


def existing_lab_netns(prefix: str) -> list[str]:
    try:
        return sorted(p.name for p in RUN_NETNS.iterdir() if p.name.startswith(prefix))
    except FileNotFoundError:
        return []


def existing_links(prefix: str) -> list[str]:
    """Network interfaces of the root namespace whose names start with ``prefix``."""
    return sorted(p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith(prefix))


async def create_sites(sites: tuple[SitePlan, ...]) -> None:
    """Create every site's namespace and links (on failure the caller tears everything down)."""
    root = [f"netns add {s.netns}" for s in sites]
    for s in sites:
        if s.veth_root:
            root += [
                f"link add {s.veth_root} type veth peer name eth0 netns {s.netns}",
                f"link set dev {s.veth_root} addrgenmode none",
                f"addr add {s.root_address}/24 dev {s.veth_root}",
            ]
    await ip_batch(root)
    await asyncio.gather(*(_configure_site(s) for s in sites))
    ups = [f"link set dev {s.veth_root} up" for s in sites if s.veth_root]
    if ups:
        await ip_batch(ups)
        await ip_batch(
            [
                f"route change 198.18.{s.number}.0/24 dev {s.veth_root} proto kernel scope link "
                f"src {s.root_address} quickack 1"
                for s in sites
                if s.veth_root
            ]
        )


async def _configure_site(site: SitePlan) -> None:
    commands = [
        "link set dev lo up",
        "route change local 127.0.0.0/8 dev lo proto kernel scope host src 127.0.0.1 "
        "table local quickack 1",
    ]
    if site.veth_root:
        commands += [
            "link set dev eth0 addrgenmode none",
            f"addr add {site.site_address}/24 dev eth0",
            *(f"addr add {h.address}/32 dev eth0" for h in site.hosts),
            *([f"addr add {site.windows.address}/32 dev eth0"] if site.windows else []),
            "link set dev eth0 up",
            f"route change 198.18.{site.number}.0/24 dev eth0 proto kernel scope link "
            f"src {site.site_address} quickack 1",
            # only sshd's replies may leave the site (see the module docstring)
            "rule del pref 32766",
            "rule add pref 1000 ipproto tcp sport 22 lookup main",
            f"rule add pref 1001 ipproto tcp sport {WINRM_PORT} lookup main",
        ]
    await ip_batch(commands, netns=site.netns)


async def delete_sites(netns_names: list[str], veths: list[str]) -> None:
    """Remove veths and namespaces; missing ones are fine (idempotent)."""
    present = set(existing_links(VETH_PREFIX)) & set(veths)
    commands = [f"link del {v}" for v in sorted(present)]
    commands += [f"netns del {n}" for n in netns_names if (RUN_NETNS / n).exists()]
    if commands:
        await ip_batch(commands, force=True)


async def remove_run_netns_mount() -> None:
    """Undo the /run/netns mount `ip netns add` made, if no namespace is left in it."""
    if not run_netns_is_mount() or existing_lab_netns(""):
        return
    proc = await asyncio.create_subprocess_exec(
        "umount", str(RUN_NETNS), stderr=asyncio.subprocess.DEVNULL
    )
    await asyncio.wait_for(proc.wait(), 10)
