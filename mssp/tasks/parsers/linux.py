"""Parsers of Linux system facts: os-release, uname, uptime, meminfo, df, getent, shadow."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from mssp.errors import TaskError


@dataclass(frozen=True)
class OsRelease:
    """/etc/os-release, the fields an inventory shows."""

    id: str
    """Lower-case distribution id: debian, ubuntu, rocky, rhel, alpine, opensuse-leap..."""
    id_like: tuple[str, ...]
    name: str
    version_id: str
    pretty_name: str
    version_codename: str = ""


def parse_os_release(text: str) -> OsRelease:
    """Parse os-release(5): KEY=value lines, values possibly shell-quoted."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            words = shlex.split(raw)
        except ValueError:
            words = [raw.strip("\"'")]
        values[key.strip()] = words[0] if words else ""
    if "ID" not in values and "NAME" not in values:
        raise TaskError("no /etc/os-release on this host (or it is empty)")
    os_id = values.get("ID", values.get("NAME", "linux")).lower()
    return OsRelease(
        id=os_id,
        id_like=tuple(values.get("ID_LIKE", "").lower().split()),
        name=values.get("NAME", os_id),
        version_id=values.get("VERSION_ID", ""),
        pretty_name=values.get("PRETTY_NAME", values.get("NAME", os_id)),
        version_codename=values.get("VERSION_CODENAME", ""),
    )


def os_family(release: OsRelease) -> str:
    """debian, redhat, suse, alpine or the id itself."""
    names = (release.id, *release.id_like)
    for family, members in (
        ("debian", ("debian", "ubuntu")),
        ("redhat", ("rhel", "fedora", "centos", "rocky", "almalinux")),
        ("suse", ("suse", "opensuse", "sles", "opensuse-leap", "opensuse-tumbleweed")),
        ("alpine", ("alpine",)),
    ):
        if any(name in members for name in names):
            return family
    return release.id


@dataclass(frozen=True)
class Uname:
    """uname -srm (kernel name, release, machine)."""

    kernel: str
    release: str
    machine: str


def parse_uname(text: str) -> Uname:
    parts = text.split()
    if len(parts) < 3:
        raise TaskError(f"unexpected `uname -srm` output: {text.strip()[:80]!r}")
    return Uname(kernel=parts[0], release=parts[1], machine=parts[-1])


def parse_uptime(text: str) -> float:
    """/proc/uptime: seconds since boot (first field)."""
    try:
        return float(text.split()[0])
    except (IndexError, ValueError):
        raise TaskError(f"unexpected /proc/uptime: {text.strip()[:80]!r}") from None


@dataclass(frozen=True)
class Memory:
    """/proc/meminfo figures in bytes."""

    total: int
    available: int
    swap_total: int
    swap_free: int

    @property
    def used_percent(self) -> float:
        return round(100.0 * (self.total - self.available) / self.total, 1) if self.total else 0.0


def parse_meminfo(text: str) -> Memory:
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            factor = 1024 if len(fields) > 1 and fields[1].lower() == "kb" else 1
            values[key.strip()] = int(fields[0]) * factor
    if "MemTotal" not in values:
        raise TaskError("no MemTotal in /proc/meminfo")
    available = values.get(
        "MemAvailable",  # kernels before 3.14 lack it: approximate as Alpine's busybox does
        values.get("MemFree", 0) + values.get("Buffers", 0) + values.get("Cached", 0),
    )
    return Memory(
        total=values["MemTotal"],
        available=available,
        swap_total=values.get("SwapTotal", 0),
        swap_free=values.get("SwapFree", 0),
    )


@dataclass(frozen=True)
class Cpu:
    """Processor count and load averages."""

    count: int
    load1: float
    load5: float
    load15: float


def parse_cpu(nproc: str, loadavg: str) -> Cpu:
    try:
        count = int(nproc.strip())
        load = [float(x) for x in loadavg.split()[:3]]
    except ValueError:
        raise TaskError(f"unexpected nproc/loadavg: {nproc!r} {loadavg!r}") from None
    if len(load) != 3:
        raise TaskError(f"unexpected /proc/loadavg: {loadavg!r}")
    return Cpu(count, *load)


@dataclass(frozen=True)
class Filesystem:
    """One line of `df -P -k` (POSIX format, 1024-byte blocks), sizes in bytes."""

    mount: str
    device: str
    size: int
    used: int
    available: int
    used_percent: int


_PSEUDO_FS = ("tmpfs", "devtmpfs", "overlay", "shm", "udev", "none", "proc", "sysfs", "run")


def parse_df(text: str, *, include_pseudo: bool = False) -> list[Filesystem]:
    """Parse `df -P -k`. Device names with spaces are kept whole (the last 5 fields are fixed)."""
    result: list[Filesystem] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 6:
            continue
        # Mount points with spaces: df -P never wraps, so the mount is everything after field 5.
        device = fields[0]
        try:
            size, used, avail = (int(x) * 1024 for x in fields[1:4])
            percent = int(fields[4].rstrip("%")) if fields[4] != "-" else 0
        except ValueError:
            continue
        mount = line.split(None, 5)[5]
        if not include_pseudo and (device in _PSEUDO_FS or size == 0):
            continue
        result.append(Filesystem(mount, device, size, used, avail, percent))
    return result


@dataclass(frozen=True)
class PasswdEntry:
    """One line of `getent passwd`."""

    name: str
    uid: int
    gid: int
    gecos: str
    home: str
    shell: str

    @property
    def is_login(self) -> bool:
        """A person's account: a regular uid and a shell one can log in with."""
        return (self.uid >= 1000 or self.uid == 0) and not self.shell.endswith(
            ("nologin", "/false", "/sync")
        )


def parse_passwd(text: str) -> list[PasswdEntry]:
    entries = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) != 7 or not fields[2].isdigit() or not fields[3].isdigit():
            continue
        entries.append(
            PasswdEntry(fields[0], int(fields[2]), int(fields[3]), fields[4], fields[5], fields[6])
        )
    return entries


@dataclass(frozen=True)
class GroupEntry:
    """One line of `getent group`."""

    name: str
    gid: int
    members: tuple[str, ...]


def parse_group(text: str) -> list[GroupEntry]:
    entries = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) != 4 or not fields[2].isdigit():
            continue
        members = tuple(m for m in fields[3].split(",") if m)
        entries.append(GroupEntry(fields[0], int(fields[2]), members))
    return entries


@dataclass(frozen=True)
class ShadowEntry:
    """The parts of one `getent shadow` line that say whether an account can be used."""

    name: str
    password_locked: bool
    """The hash starts with '!' (usermod -L / passwd -l)."""
    has_password: bool
    """A usable hash is stored (after any '!' lock prefix)."""
    expire_day: int | None
    """Account expiry in days since 1970-01-01, or None."""

    def expired(self, today: int) -> bool:
        return self.expire_day is not None and self.expire_day <= today


def parse_shadow(line: str) -> ShadowEntry | None:
    fields = line.strip().split(":")
    if len(fields) < 9:
        return None
    hashed = fields[1]
    locked = hashed.startswith("!")
    bare = hashed.lstrip("!")
    expire = int(fields[7]) if fields[7].isdigit() else None
    return ShadowEntry(
        name=fields[0],
        password_locked=locked,
        has_password=bool(bare) and bare not in ("*", "x"),
        expire_day=expire,
    )
