"""Parsers of package-manager output: pending updates (apt, dnf, zypper, apk) and versions."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class PackageUpdate:
    """One package with a newer version available."""

    name: str
    current: str
    """Installed version ('' when the update pulls in a package that is not installed)."""
    available: str
    arch: str = ""
    source: str = ""
    """Repository / suite the new version comes from."""
    security: bool = False
    """The update fixes a security issue (from the suite or the advisory type)."""


# Inst libssl3 [3.0.11-1~deb12u1] (3.0.13-1~deb12u2 Debian-Security:12/stable-security [amd64])
_APT_INST = re.compile(r"^Inst (\S+)(?: \[([^\]]*)\])? \((\S+) (.*?) ?\[([^\]]+)\]\)")


def _apt_security(source: str) -> bool:
    return bool(re.search(r"(?i)(-security\b|debian-security|/updates\b.*security)", source))


def parse_apt_simulate(text: str) -> list[PackageUpdate]:
    """Parse ``apt-get -s dist-upgrade`` (or ``upgrade``): its "Inst" lines.

    Sources list every archive the version is in ("Ubuntu:22.04/jammy-updates,
    Ubuntu:22.04/jammy-security"); any "-security" archive marks it a security update.
    """
    updates = []
    for line in text.splitlines():
        match = _APT_INST.match(line.strip())
        if match:
            name, current, available, source, arch = match.groups()
            source = source.strip().rstrip(",")
            if current == available:  # a reinstall of the same version is not an update
                continue
            updates.append(
                PackageUpdate(name, current or "", available, arch, source, _apt_security(source))
            )
    return updates


# libssl3/stable-security 3.0.13-1~deb12u2 amd64 [upgradable from: 3.0.11-1~deb12u1]
_APT_LIST = re.compile(r"^(\S+?)/(\S+) (\S+) (\S+) \[upgradable from: ([^\]]+)\]")


def parse_apt_list_upgradable(text: str) -> list[PackageUpdate]:
    """Parse ``apt list --upgradable`` (stdout; apt's CLI-stability warning goes to stderr)."""
    updates = []
    for line in text.splitlines():
        match = _APT_LIST.match(line.strip())
        if match:
            name, suites, available, arch, current = match.groups()
            updates.append(
                PackageUpdate(name, current, available, arch, suites, _apt_security(suites))
            )
    return updates


def split_nevra(nevra: str) -> tuple[str, str, str]:
    """'openssl-1:3.0.7-29.el9_4.x86_64' → ('openssl', '1:3.0.7-29.el9_4', 'x86_64')."""
    base, _, arch = nevra.rpartition(".")
    if not base:
        return nevra, "", ""
    name_version, _, release = base.rpartition("-")
    name, _, version = name_version.rpartition("-")
    if not name:
        return nevra, "", ""
    return name, f"{version}-{release}", arch


def parse_dnf_check_update(text: str) -> list[PackageUpdate]:
    """Parse ``dnf check-update`` / ``yum check-update`` (exit 100 when there are updates).

    Lines are "name.arch  version  repo"; a long name.arch wraps its other columns onto the next
    line. Parsing stops at "Obsoleting Packages" (those are listed again as updates above it).
    """
    updates: list[PackageUpdate] = []
    pending: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("Obsoleting Packages", "Security:")):
            break
        if not stripped or stripped.startswith(("Last metadata", "Updating", "Loaded plugins")):
            pending = []
            continue
        pending.extend(stripped.split())
        if len(pending) < 3:
            continue
        if len(pending) > 3 or "." not in pending[0]:
            pending = []  # a line of prose (a warning), not a package
            continue
        name_arch, version, repo = pending
        pending = []
        name, _, arch = name_arch.rpartition(".")
        updates.append(PackageUpdate(name, "", version, arch, repo))
    return updates


def parse_dnf_updateinfo(text: str) -> dict[str, str]:
    """Parse ``dnf updateinfo list --security --updates``: package name → advisory id.

    Lines: "RLSA-2024:9000 Important/Sec. openssl-1:3.0.7-29.el9_4.x86_64" (dnf4) or with an
    extra severity column (dnf5: "RHSA-2024:9000 security Important openssl-3.0.7-29...").
    """
    advisories: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or not re.match(r"^[A-Z]+[A-Z0-9]*-\d{4}[:-]", fields[0]):
            continue
        name, _, _ = split_nevra(fields[-1])
        advisories.setdefault(name, fields[0])
    return advisories


def parse_rpm_versions(text: str) -> dict[str, str]:
    """Parse ``rpm -q --qf '%{NAME} %{EPOCH}:%{VERSION}-%{RELEASE}\\n'`` ('(none):' dropped)."""
    versions: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and "not installed" not in line:
            version = fields[1].removeprefix("(none):")
            versions[fields[0]] = version
    return versions


def parse_dpkg_versions(text: str) -> dict[str, str]:
    """Parse ``dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\\n'`` (installed)."""
    versions: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2].startswith("ii"):
            versions[fields[0]] = fields[1]
        elif len(fields) == 2:
            versions[fields[0]] = fields[1]
    return versions


def apply_rpm_currents(
    updates: list[PackageUpdate], installed: dict[str, str]
) -> list[PackageUpdate]:
    """Fill in current versions (dnf check-update does not print them)."""
    return [
        PackageUpdate(u.name, installed.get(u.name, u.current), u.available, u.arch, u.source,
                      u.security)
        for u in updates
    ]  # fmt: skip


def parse_zypper_list_updates(text: str) -> list[PackageUpdate]:
    """Parse ``zypper --non-interactive list-updates`` (a '|' table; first column 'v')."""
    updates = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) >= 6 and cells[0] == "v":
            _, repo, name, current, available, arch = cells[:6]
            updates.append(PackageUpdate(name, current, available, arch, repo))
    return updates


def parse_zypper_security_patches(text: str) -> list[str]:
    """Names of needed security patches in ``zypper list-patches --category security``."""
    names = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) >= 6 and cells[2] == "security" and cells[5] == "needed":
            names.append(cells[1])
    return names


def _split_apk(name_version: str) -> tuple[str, str]:
    """'busybox-1.36.1-r15' → ('busybox', '1.36.1-r15')."""
    base, _, rel = name_version.rpartition("-")
    name, _, version = base.rpartition("-")
    return (name, f"{version}-{rel}") if name else (name_version, "")


# busybox-1.36.1-r19 x86_64 {busybox} (GPL-2.0-only) [upgradable from: busybox-1.36.1-r15]
_APK = re.compile(r"^(\S+) (\S+) \{[^}]*\} \([^)]*\) \[upgradable from: (\S+)\]")


def parse_apk_upgradable(text: str) -> list[PackageUpdate]:
    """Parse ``apk list --upgradable`` (apk-tools 2.12+). apk has no security classification."""
    updates = []
    for line in text.splitlines():
        match = _APK.match(line.strip())
        if match:
            new, arch, old = match.groups()
            name, available = _split_apk(new)
            _, current = _split_apk(old)
            updates.append(PackageUpdate(name, current, available, arch, ""))
    return updates


def parse_apk_versions(text: str) -> dict[str, str]:
    """Parse ``apk info -v`` lines ('name-version-rN')."""
    return dict(_split_apk(line.strip()) for line in text.splitlines() if line.strip())
