"""The running lab's record on disk (data_dir/lab/state.json): what `lab status` and `lab down` use.

Everything the lab made is listed here (namespaces, veths, processes with their start times so a
recycled pid is never signalled, the mounts it caused), so another process can inspect or remove
it. Secrets are not in this file: the client key and the admin password sit next to it, mode 0600.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mssp.config import Settings
from mssp.errors import LabError

STATE_VERSION = 1


def lab_dir(settings: Settings) -> Path:
    return settings.data_dir / "lab"


def client_key_file(settings: Settings) -> Path:
    """The lab's SSH client private key (OpenSSH form, 0600): kept across `up`/`down`."""
    return lab_dir(settings) / "client_key"


def admin_password_file(settings: Settings) -> Path:
    """The lab hosts' `admin` password (0600): kept across `up`/`down`."""
    return lab_dir(settings) / "admin_password"


@dataclass(frozen=True)
class ProcessRef:
    """A process the lab started: pid plus its start time (field 22 of /proc/PID/stat)."""

    pid: int
    start_time: int


@dataclass(frozen=True)
class HostState:
    """One running lab host."""

    key: str
    client: str
    site: str
    name: str
    hostname: str
    address: str
    port: int
    tags: list[str]
    host_key: str
    """The host's ed25519 public key, OpenSSH form (what the inventory pins)."""
    launcher: ProcessRef | None = None
    """The host's supervisor (host-supervisor.sh): lives across reboots; SIGTERM stops the host."""
    init: ProcessRef | None = None
    """sshd, init of the host's PID namespace at its first boot (after a reboot the running one
    is ``mssp.lab.host.current_init``); for the simulated Windows host, its endpoint process."""
    username: str = "root"
    """Who the lab's key logs in as (the current user in reduced mode)."""
    transport: str = "ssh"
    """"ssh", or "winrm" for the simulated Windows host (recorded replies, not Windows)."""
    options: dict = field(default_factory=dict)
    """Options for the inventory (WinRM: scheme, auth, cert_sha256; SSH: reboot_command)."""

    @property
    def full_name(self) -> str:
        return f"{self.client}/{self.site}/{self.name}"


@dataclass(frozen=True)
class SiteState:
    """One lab site (a network namespace, or nothing in reduced mode)."""

    number: int
    client: str
    client_name: str
    slug: str
    reach: str
    netns: str | None
    netns_inode: int | None = None
    veth_root: str | None = None
    root_address: str | None = None


@dataclass(frozen=True)
class LabState:
    """The whole lab as it was started."""

    mode: str
    """"namespaces" (the real lab) or "reduced" (sshd processes on 127.x, no isolation)."""
    created_at: float
    spec: dict
    sites: list[SiteState]
    hosts: list[HostState]
    client_public_key: str
    made_dirs: list[str] = field(default_factory=list)
    """Directories outside the lab dir that the lab created (removed by `down` when empty)."""
    made_run_netns_mount: bool = False
    """Whether `ip netns add` had to create the /run/netns mount (then `down` removes it)."""
    started_seconds: float = 0.0
    registered: bool = False
    """Whether the inventory rows were written."""
    version: int = STATE_VERSION
    notes: list[str] = field(default_factory=list)


def _state_path(settings: Settings) -> Path:
    return lab_dir(settings) / "state.json"


def save(settings: Settings, state: LabState) -> None:
    path = _state_path(settings)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=1, sort_keys=True))
    os.replace(tmp, path)


def load(settings: Settings) -> LabState | None:
    """The recorded lab, or None when no lab is recorded."""
    path = _state_path(settings)
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        if raw.get("version") != STATE_VERSION:
            raise ValueError(f"state version {raw.get('version')}")
        hosts = [
            HostState(
                **{
                    **h,
                    "launcher": ProcessRef(**h["launcher"]) if h.get("launcher") else None,
                    "init": ProcessRef(**h["init"]) if h.get("init") else None,
                }
            )
            for h in raw.pop("hosts")
        ]
        sites = [SiteState(**s) for s in raw.pop("sites")]
        return LabState(hosts=hosts, sites=sites, **raw)
    except (ValueError, TypeError, KeyError) as exc:
        raise LabError(f"{path} is unreadable ({exc}); remove the lab by hand") from None


@contextlib.contextmanager
def locked(settings: Settings) -> Iterator[Path]:
    """Serialise `lab up` and `lab down` across processes; yields the lab directory."""
    directory = lab_dir(settings)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LabError("another `mssp lab up/down` is running on this lab") from None
        yield directory
    finally:
        os.close(fd)


def process_start_time(pid: int) -> int | None:
    """The start time of a live process, or None if it does not exist (zombies count as gone)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(ref: ProcessRef | None) -> bool:
    return ref is not None and process_start_time(ref.pid) == ref.start_time
