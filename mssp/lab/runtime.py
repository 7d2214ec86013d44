"""Bring the whole lab up, report on it, and take it down leaving nothing behind.

`up` builds the shared lower layer (lab apt repository, old package versions installed, the admin
user) while it creates the site namespaces, then starts every host in parallel. Anything that
fails half-way is torn down before the error is raised. `down` stops hosts, kills whatever still
runs inside a lab namespace, deletes veths and namespaces, the /run/netns mount if the lab caused
it, and the lab's files except its keys and admin password (keys.py: kept so credentials, pins
and known_hosts stay valid across restarts).

One namespace lab per machine (its names are global): `up` refuses while another MSSP_HOME's lab
is live and removes the debris of a lab that lost its record; `down` never touches another home's
live lab unless forced (leftovers.py). Both hold a machine-wide lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from mssp.config import Settings
from mssp.errors import LabError
from mssp.lab import host as lab_host
from mssp.lab import leftovers
from mssp.lab import netns as lab_netns
from mssp.lab import windows as lab_windows
from mssp.lab.baselayer import REBOOT_COMMAND, build_base_layer, unmount_base
from mssp.lab.keys import LabKeys, host_key, lab_keys
from mssp.lab.layout import LabSpec, SitePlan, plan
from mssp.lab.reduced import check_reduced_prerequisites, start_reduced
from mssp.lab.state import (
    HostState,
    LabState,
    SiteState,
    lab_dir,
    load,
    locked,
    save,
)

Progress = Callable[[str], None]
REQUIRED_TOOLS = ("ip", "nsenter", "unshare", "setpriv", "pivot_root", "/usr/sbin/sshd")
REQUIRED_TOOLS += ("dpkg-deb", "sudo", "restic")


def check_prerequisites() -> None:
    """LabError saying exactly what is missing for the namespace lab."""
    if os.geteuid() != 0:
        raise LabError(
            "the lab needs root: network namespaces, overlay mounts over / and useradd inside "
            "hosts are not possible without it (unprivileged user namespaces cannot overlay / "
            "or log in over sshd: setgroups fails). Run `sudo mssp lab up`, or "
            "`mssp lab up --reduced` for sshd processes on 127.77.x.x in this namespace "
            "(no isolation: commands run on this machine as you).",
            title="Lab needs root",
        )
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if missing:
        raise LabError(
            f"missing tools: {', '.join(missing)} (scripts/bootstrap.sh installs the Debian "
            "packages openssh-server, restic, sudo, iproute2, util-linux, dpkg-dev)"
        )
    if not Path("/proc/self/ns/net").exists():
        raise LabError("this kernel has no network namespaces")


def host_masks(settings: Settings) -> list[str]:
    """Directories hidden (empty tmpfs) inside every host: mssp's own files, the work tree..."""
    masks = {"/work", "/mnt", "/media", "/etc/apt/auth.conf.d"}
    masks |= {str(settings.config_dir.resolve()), str(settings.data_dir.resolve())}
    try:
        masks |= {str(p) for p in Path("/home").iterdir() if p.name != "admin"}
    except FileNotFoundError:
        pass
    # /tmp and /root are fresh tmpfs in every host already
    fresh = ("/tmp", "/root")  # noqa: S108 (paths inside the host, not temporary files)
    return sorted(m for m in masks if m != "/" and not m.startswith(fresh))


def _site_state(site: SitePlan, *, reduced: bool = False) -> SiteState:
    if reduced:
        return SiteState(site.number, site.client, site.client_name, site.slug, "direct", None)
    return SiteState(
        number=site.number,
        client=site.client,
        client_name=site.client_name,
        slug=site.slug,
        reach=site.reach,
        netns=site.netns,
        netns_inode=lab_netns.netns_inode(site.netns),
        veth_root=site.veth_root,
        root_address=site.root_address,
    )


async def up(
    settings: Settings,
    spec: LabSpec,
    *,
    reduced: bool = False,
    progress: Progress | None = None,
) -> LabState:
    """Start the lab; on any failure everything made so far is removed before the error.

    ``reduced``: sshd processes on 127.77.x.x in this namespace, no isolation (see reduced.py).
    """
    say = progress or (lambda _msg: None)
    sites = plan(spec)
    if reduced:
        check_reduced_prerequisites()
    else:
        check_prerequisites()
    started = time.monotonic()
    with locked(settings) as directory:
        if load(settings) is not None:
            raise LabError("a lab is already running here: `mssp lab down` first")
        if reduced:
            return await _up_locked(settings, directory, spec, sites, reduced, say, started)
        async with leftovers.machine_lock(say=say):
            found = leftovers.survey()
            live = found.live_owners(directory)
            if live:
                raise LabError(
                    f"another lab runs on this machine, recorded in {live[0]} (one namespace lab "
                    "per machine: its names are global). Stop it with `mssp lab down` and that "
                    "lab's MSSP_HOME, or remove it from here with `mssp lab down --force`",
                    title="Another lab is running",
                )
            if not found.empty:
                say(f"removing leftovers of a lab that lost its record: {found.describe()}")
                await _sweep(found)
            return await _up_locked(settings, directory, spec, sites, reduced, say, started)


async def _up_locked(
    settings: Settings,
    directory: Path,
    spec: LabSpec,
    sites: tuple[SitePlan, ...],
    reduced: bool,
    say: Progress,
    started: float,
) -> LabState:
    """The start itself, under the lab's lock (and the machine's, for a namespace lab)."""
    keys = lab_keys(settings)
    made_mount = not reduced and not lab_netns.run_netns_is_mount()
    state = LabState(
        mode="reduced" if reduced else "namespaces",
        created_at=time.time(),
        spec=asdict(spec),
        sites=[_site_state(s, reduced=reduced) for s in sites],
        hosts=[],
        client_public_key=keys.public_key,
        made_run_netns_mount=made_mount,
    )
    save(settings, state)  # from here on, `down` can clean up after a crash
    try:
        if reduced:
            say(f"starting {sum(len(s.hosts) for s in sites)} sshd process(es) (reduced)")
            state = await start_reduced(settings, directory, sites, state, host_key)
        else:
            state = await _start(settings, directory, sites, keys, state, say)
    except BaseException:
        say("start failed: removing what was made")
        # under the machine lock, with no other live lab: every lab-named thing is ours
        sweep = None if reduced else leftovers.survey()
        await _teardown(settings, load(settings) or state, sweep=sweep)
        raise
    state = replace(state, started_seconds=round(time.monotonic() - started, 3))
    save(settings, state)
    return state


async def _start(
    settings: Settings,
    directory: Path,
    sites: tuple[SitePlan, ...],
    keys: LabKeys,
    state: LabState,
    say: Progress,
) -> LabState:
    hosts = [(site, h) for site in sites for h in site.hosts]
    say(f"building the base layer and {len(sites)} site network(s)")
    layer, _ = await asyncio.gather(
        build_base_layer(directory, keys), lab_netns.create_sites(sites)
    )
    state = replace(state, sites=[_site_state(s) for s in sites])
    save(settings, state)
    masks = host_masks(settings)
    hosts_dir = directory / "hosts"
    if hosts_dir.exists():
        shutil.rmtree(hosts_dir)
    say(f"starting {len(hosts)} host(s)")
    records: list[HostState] = []
    for site, h in hosts:
        private, public = host_key(directory / "hostkeys" / h.key)
        host_dir = hosts_dir / h.key
        lab_host.write_host_files(
            host_dir,
            hostname=h.hostname,
            address=h.address,
            port=22,
            private_key=private,
            public_key=public,
            authorized_keys=keys.public_key + "\n",
            masks=masks,
        )
        launcher = lab_host.launch(site.netns, host_dir, layer, h.hostname)
        records.append(
            HostState(
                key=h.key, client=h.client, site=h.site, name=h.name, hostname=h.hostname,
                address=h.address, port=22, tags=list(h.tags), host_key=public,
                launcher=launcher, options={"reboot_command": REBOOT_COMMAND},
            )
        )  # fmt: skip
    windows = _launch_windows(sites, hosts_dir, keys)
    notes = list(state.notes) + [lab_windows.NOTE.format(name=w.full_name) for w in windows]
    state = replace(state, hosts=records + windows, notes=notes)
    save(settings, state)
    deadline = time.monotonic() + 30 + 0.2 * len(records)
    ssh_ready = asyncio.gather(
        *(
            lab_host.wait_ready(r.launcher, hosts_dir / r.key, deadline)
            for r in records
            if r.launcher
        )
    )
    windows_ready = asyncio.gather(
        *(
            lab_windows.wait_windows_ready(w.init, hosts_dir / w.key, deadline)
            for w in windows
            if w.init
        )
    )
    inits, _ = await asyncio.gather(ssh_ready, windows_ready)
    records = [replace(r, init=i) for r, i in zip(records, inits, strict=True)]
    state = replace(state, hosts=records + windows)
    save(settings, state)
    say(f"{len(records) + len(windows)} host(s) up")
    return state


def _launch_windows(sites: tuple[SitePlan, ...], hosts_dir: Path, keys: LabKeys) -> list[HostState]:
    started = []
    for site in sites:
        w = site.windows
        if w is None:
            continue
        launch = lab_windows.launch_windows(site.netns, hosts_dir / w.key, w, keys.admin_password)
        started.append(
            HostState(
                key=w.key, client=w.client, site=w.site, name=w.name, hostname=w.hostname,
                address=w.address, port=w.port, tags=list(w.tags), host_key="",
                init=launch.process, username=lab_windows.ADMIN_USER, transport="winrm",
                options=launch.options,
            )
        )  # fmt: skip
    return started


def status(settings: Settings) -> LabState | None:
    """The recorded lab (None when none runs); liveness is checked by the caller with alive()."""
    return load(settings)


async def down(
    settings: Settings, *, force: bool = False, progress: Progress | None = None
) -> list[str]:
    """Remove this home's lab; returns notes on anything unusual.

    Also sweeps lab-named debris of a lab that lost its record; a live lab of another MSSP_HOME
    is left alone unless ``force``.
    """
    say = progress or (lambda _msg: None)
    # The lab relay runs in the root namespace, which the teardown below does not sweep.
    from mssp.lab import relaylink

    if (await relaylink.down(settings)).get("stopped"):
        say("stopped the lab relay and its agent")
    with locked(settings):
        state = load(settings)
        if state is not None and state.mode == "reduced" and not force:
            return await _teardown(settings, state, say=say, sweep=None)
        async with leftovers.machine_lock(say=say):
            found = leftovers.survey()
            foreign = found.live_owners(lab_dir(settings))
            notes = []
            if foreign and not force:
                notes.append(
                    f"the lab namespaces on this machine belong to the lab recorded in "
                    f"{foreign[0]}: left alone (`mssp lab down --force` removes it too)"
                )
            elif foreign:
                notes.append(f"removed the lab recorded in {foreign[0]} too (--force)")
            sweep = None if foreign and not force else found
            return notes + await _teardown(settings, state, say=say, sweep=sweep)


async def _kill_in_netns(inodes: set[int]) -> None:
    """SIGKILL whatever runs in these namespaces (shells, agents, a host's processes)."""
    for _ in range(50):
        pids = leftovers.processes_in_netns(inodes)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.05)


async def _sweep(found: leftovers.Survey) -> None:
    """Remove lab-named namespaces, veths and base-layer mounts, whoever made them."""
    inodes = {i for i in (lab_netns.netns_inode(n) for n in found.netns) if i is not None}
    await _kill_in_netns(inodes)
    await lab_netns.delete_sites(list(found.netns), list(found.veths))
    for point in found.base_mounts:
        await unmount_base(Path(point).parent)
    await lab_netns.remove_run_netns_mount()


async def _teardown(
    settings: Settings,
    state: LabState | None,
    *,
    say: Progress | None = None,
    sweep: leftovers.Survey | None = None,
) -> list[str]:
    """Remove what ``state`` records, and the ``sweep`` survey's lab-named things."""
    say = say or (lambda _msg: None)
    notes: list[str] = []
    directory = lab_dir(settings)
    if state is not None and state.hosts:
        say(f"stopping {len(state.hosts)} host(s)")
        survivors = await lab_host.stop_hosts(state.hosts, directory / "hosts")
        if survivors:
            notes.append(f"hosts still running after SIGKILL: {', '.join(survivors)}")
    own = state is not None and state.mode == "namespaces"
    # Our namespaces only while they are still the ones we made (same inode).
    names = set(sweep.netns) if sweep else set()
    inodes = {i for i in (lab_netns.netns_inode(n) for n in names) if i is not None}
    veths = set(sweep.veths) if sweep else set()
    if own and state is not None:
        for site in state.sites:
            if site.netns and site.netns_inode == lab_netns.netns_inode(site.netns):
                names.add(site.netns)
                inodes.add(site.netns_inode)
                if site.veth_root:
                    veths.add(site.veth_root)
    await _kill_in_netns(inodes)
    if names or veths:
        say(f"removing {len(names)} site network(s)")
    await lab_netns.delete_sites(sorted(names), sorted(veths))
    for point in sweep.base_mounts if sweep else ():
        await unmount_base(Path(point).parent)
    if state is not None and state.made_run_netns_mount:
        await lab_netns.remove_run_netns_mount()
    for made in reversed(state.made_dirs if state else []):
        with contextlib.suppress(OSError):
            os.rmdir(made)  # only if empty: something else may use it by now
    await unmount_base(directory)
    for sub in ("base", "hosts"):
        shutil.rmtree(directory / sub, ignore_errors=True)
    (directory / "state.json").unlink(missing_ok=True)
    return notes
