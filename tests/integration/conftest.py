"""Session fixtures for lab-backed integration tests: one running lab of real hosts per session.

``lab`` starts ``mssp lab up --sites 2 --hosts-per-site 5 --windows`` in its own MSSP_HOME: site 1
(lab-acme/hq) direct, with also the SIMULATED Windows host lab-acme/hq/win1 at 198.18.1.9:5986;
site 2 (lab-globex/branch) relay-only. It is registered in that home's inventory and vault, and
taken down at the end.
It needs root and FAILS (never skips) when the lab cannot start. Read the lab through the handle
(``lab.state()`` re-reads state.json, so a test that restarts the lab stays consistent):

    async def test_x(lab):
        h = lab.hosts(reach="direct")[0]
        async with lab.connect(h) as conn:          # asyncssh, lab key, pinned host key
            result = await conn.run("hostname", check=True)
        lab.settings, lab.env, lab.client_key, lab.admin_password, lab.in_site(h, argv)
        lab.windows_host()  # HostState of the simulated Windows host (transport winrm)

Also `lab_settings` (Settings with the vault key file) and `lab_client_key` (private key text).

One namespace lab runs per machine. Before starting, the fixture removes what a crashed earlier
test session left (its home records the pytest process that owned it, now dead) and debris
without an owner; a lab another live process owns fails the session with a clear message, or is
waited for up to MSSP_TEST_LAB_WAIT seconds (default 0: CI fails at once). The session's end
runs `mssp lab down` and checks that nothing lab-named is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import pytest

from mssp.config import Settings, load_settings
from mssp.lab import leftovers
from mssp.lab.layout import NETNS_PREFIX, VETH_PREFIX
from mssp.lab.state import (
    HostState,
    LabState,
    ProcessRef,
    admin_password_file,
    alive,
    client_key_file,
    load,
    process_start_time,
)

MSSP = str(Path(sys.executable).with_name("mssp"))
LAB_SITES = 2
LAB_HOSTS_PER_SITE = 5
OWNER_FILE = "pytest-owner"
"""In a test lab's home: "pid start_time" of the pytest process whose session owns the lab."""


@dataclass(frozen=True)
class MachineSnapshot:
    """What exists on the machine that a lab could leave behind."""

    netns: frozenset[str]
    links: frozenset[str]
    mounts: frozenset[str]
    """Mount points of this process's mount namespace."""
    pids: frozenset[int] = field(default_factory=frozenset)

    @classmethod
    def take(cls) -> MachineSnapshot:
        try:
            netns = frozenset(os.listdir("/run/netns"))
        except FileNotFoundError:
            netns = frozenset()
        with open("/proc/self/mountinfo") as f:
            mounts = frozenset(line.split()[4] for line in f)
        pids = frozenset(int(p) for p in os.listdir("/proc") if p.isdigit())
        return cls(netns, frozenset(os.listdir("/sys/class/net")), mounts, pids)


def run_mssp(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MSSP, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@dataclass
class LabHandle:
    """A running lab and how to reach it."""

    home: Path
    settings: Settings
    env: dict[str, str]
    """Environment for `mssp` subprocesses against the lab's home (vault unlocks unattended)."""
    baseline: MachineSnapshot
    """The machine before the session's lab started (for leave-nothing-behind checks)."""

    def state(self) -> LabState:
        state = load(self.settings)
        if state is None:
            pytest.fail("the session's lab is not running", pytrace=False)
        return state

    @property
    def client_key(self) -> str:
        return client_key_file(self.settings).read_text()

    @property
    def client_key_path(self) -> Path:
        return client_key_file(self.settings)

    @property
    def admin_password(self) -> str:
        return admin_password_file(self.settings).read_text().strip()

    def hosts(self, *, reach: str | None = None, transport: str = "ssh") -> list[HostState]:
        """The lab's hosts (by default its Linux/SSH ones), optionally of one reach."""
        state = self.state()
        reaches = {(s.client, s.slug): s.reach for s in state.sites}
        return [
            h
            for h in state.hosts
            if reach in (None, reaches[(h.client, h.site)]) and h.transport == transport
        ]

    def windows_host(self) -> HostState:
        return self.hosts(transport="winrm")[0]

    def netns_of(self, host: HostState) -> str:
        for site in self.state().sites:
            if (site.client, site.slug) == (host.client, host.site) and site.netns:
                return site.netns
        raise LookupError(host.full_name)

    @contextlib.asynccontextmanager
    async def connect(
        self, host: HostState, *, username: str = "root", **kwargs
    ) -> AsyncIterator[asyncssh.SSHClientConnection]:
        """An asyncssh connection from the root namespace: lab key, pinned host key only."""
        key = asyncssh.import_private_key(self.client_key)
        async with asyncssh.connect(
            host.address,
            host.port,
            username=username,
            client_keys=[key],
            known_hosts=([asyncssh.import_public_key(host.host_key)], [], []),
            agent_path=None,
            connect_timeout=10,
            **kwargs,
        ) as conn:
            yield conn

    def in_site(self, host: HostState, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        """Run a command in the host's site namespace (not in the host): e.g. the system ssh."""
        return subprocess.run(
            ["ip", "netns", "exec", self.netns_of(host), *argv],
            capture_output=True, text=True, timeout=60, check=False, **kwargs,
        )  # fmt: skip

    def ssh_in_site(self, host: HostState, command: str, *, user: str = "root"):
        """The system OpenSSH client from inside the host's site, checking the pinned key."""
        known = self.home / f"known_hosts.{host.key}"
        known.write_text(f"{host.address} {host.host_key}\n")
        return self.in_site(host, [
            "ssh", "-F", "/dev/null", "-i", str(self.client_key_path),
            "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
            "-o", "KexAlgorithms=curve25519-sha256", f"{user}@{host.address}", command,
        ])  # fmt: skip

    def up(self) -> None:
        deadline = time.monotonic() + float(os.environ.get("MSSP_TEST_LAB_WAIT", "0") or 0)
        while True:
            result = run_mssp(
                self.env, "lab", "up", "--sites", str(LAB_SITES),
                "--hosts-per-site", str(LAB_HOSTS_PER_SITE), "--windows", "--json",
            )  # fmt: skip
            if "Another lab is running" not in result.stderr or time.monotonic() > deadline:
                break
            time.sleep(5)  # another session's lab took the machine: wait for it, if allowed
        if result.returncode != 0:
            pytest.fail(
                f"`mssp lab up` failed ({result.returncode}):\n{result.stderr}", pytrace=False
            )
        data = json.loads(result.stdout)
        if not data.get("registered"):
            pytest.fail(f"the lab did not register itself: {result.stdout}", pytrace=False)
        self.env["MSSP_VAULT_KEY_FILE"] = str(self.settings.config_dir / "lab-vault.key")

    def down(self) -> subprocess.CompletedProcess:
        return run_mssp(self.env, "lab", "down", "--json")


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("lab integration tests need root (network namespaces, overlays)", pytrace=False)


def _crashed_test_home(lab_dir: str) -> Path | None:
    """The home of a lab a dead pytest session left behind (None: not a test lab, or alive)."""
    home = Path(lab_dir).parent  # MSSP_HOME: the lab dir is <home>/lab
    try:
        pid, start = (int(f) for f in (home / OWNER_FILE).read_text().split())
    except (OSError, ValueError):
        return None
    return None if alive(ProcessRef(pid, start)) else home


def clear_the_machine(env: dict[str, str]) -> None:
    """Leave the machine free for this session's lab, or fail saying who holds it."""
    wait = float(os.environ.get("MSSP_TEST_LAB_WAIT", "0") or 0)
    deadline = time.monotonic() + wait
    while True:
        found = leftovers.survey()
        live = found.live_owners()
        for lab_dir in live:
            crashed = _crashed_test_home(lab_dir)
            if crashed is not None:  # a crashed session's lab: its own home takes it down
                result = run_mssp({**env, "MSSP_HOME": str(crashed)}, "lab", "down", "--json")
                assert result.returncode == 0, result.stderr
        if live and any(_crashed_test_home(d) is None for d in live):
            if time.monotonic() < deadline:
                time.sleep(5)
                continue
            owner = next(d for d in live if _crashed_test_home(d) is None)
            pytest.fail(
                f"another lab is running on this machine, recorded in {owner} (one lab per "
                "machine). Wait for it, stop it with `MSSP_HOME=<its home> mssp lab down`, or "
                "`mssp lab down --force`; MSSP_TEST_LAB_WAIT=seconds makes the tests wait.",
                pytrace=False,
            )
        if not leftovers.survey().empty:  # debris without a live owner: any home sweeps it
            result = run_mssp(env, "lab", "down", "--json")
            assert result.returncode == 0, result.stderr
        return


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    """A running lab for the whole session (see the module docstring)."""
    require_root()
    home = tmp_path_factory.mktemp("lab-home")
    (home / OWNER_FILE).write_text(f"{os.getpid()} {process_start_time(os.getpid())}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSSP_")}
    env["MSSP_HOME"] = str(home)
    clear_the_machine(env)
    handle = LabHandle(
        home=home,
        settings=load_settings({"MSSP_HOME": str(home)}),
        env=env,
        baseline=MachineSnapshot.take(),
    )
    handle.up()
    try:
        yield handle
    finally:
        result = handle.down()
    assert result.returncode == 0, result.stderr
    left = [n for n in MachineSnapshot.take().netns if n.startswith(NETNS_PREFIX)]
    left += [n for n in os.listdir("/sys/class/net") if n.startswith(VETH_PREFIX)]
    assert not left, f"lab leftovers after the session: {left}"


@pytest.fixture(scope="session")
def lab_settings(lab: LabHandle) -> Settings:
    """Settings of the lab's MSSP_HOME: its database holds the lab; its vault unlocks unattended."""
    return lab.settings.replace(vault_key_file=lab.settings.config_dir / "lab-vault.key")


@pytest.fixture(scope="session")
def lab_client_key(lab: LabHandle) -> str:
    """The lab's SSH client private key (OpenSSH form): root and admin on every lab host."""
    return lab.client_key
