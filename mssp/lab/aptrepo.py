"""A tiny local apt repository of generated packages, so "pending updates" are real apt behaviour.

Each package (mssp-lab-tool-a, -b, -c) exists in an old and a new version; hosts get the old one
installed and see the new one as upgradable. The repository is a flat one
(``deb [trusted=yes] file:/srv/mssp-lab-repo ./``) with ``Packages`` and a ``Release`` file (apt
refuses a repository without a Release file: "Method gave a blank filename").

Each ``Packages`` stanza is the .deb's own control file plus the index fields, as
dpkg-scanpackages writes it: apt identifies a version by a hash over some fields (Installed-Size,
Depends, ...), and an index that disagrees with what dpkg recorded at install time makes apt see
two different "1.1" and list the installed one as upgradable ("1.1 -> 1.1").
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from mssp.errors import LabError

PACKAGES = ("mssp-lab-tool-a", "mssp-lab-tool-b", "mssp-lab-tool-c")
OLD_VERSION = "1.0"
NEW_VERSION = "1.1"
REPO_PATH_IN_HOST = "/srv/mssp-lab-repo"
SOURCES_LINE = f"deb [trusted=yes] file:{REPO_PATH_IN_HOST} ./\n"


@dataclass(frozen=True)
class BuiltPackage:
    """One .deb in the repository."""

    name: str
    version: str
    filename: str
    """Path relative to the repository root."""


def _control(name: str, version: str, installed_kib: int) -> str:
    return (
        f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: mssp lab <lab@mssp.invalid>\n"
        f"Installed-Size: {installed_kib}\nSection: utils\nPriority: optional\n"
        f"Description: generated lab package {name}\n"
        " Installed in lab hosts at version 1.0; 1.1 is published as a pending update.\n"
    )


def _installed_kib(root: Path) -> int:
    """Like dpkg-gencontrol: each file's size rounded up to KiB, one KiB per directory."""
    total = 0
    for path in root.rglob("*"):
        if "DEBIAN" in path.relative_to(root).parts:
            continue
        total += 1 if path.is_dir() else -(-path.stat().st_size // 1024)
    return total


def _write_tree(root: Path, name: str, version: str) -> None:
    (root / "DEBIAN").mkdir(parents=True)
    bin_dir = root / "usr" / "bin"
    bin_dir.mkdir(parents=True)
    tool = bin_dir / name
    tool.write_text(f"#!/bin/sh\necho '{name} {version}'\n")
    tool.chmod(0o755)
    share = root / "usr" / "share" / name
    share.mkdir(parents=True)
    (share / "VERSION").write_text(version + "\n")
    (root / "DEBIAN" / "control").write_text(_control(name, version, _installed_kib(root)))


async def _build_deb(tree: Path, output: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        "dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", str(tree), str(output),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise LabError(f"dpkg-deb failed for {tree.name}: {err.decode(errors='replace').strip()}")


async def _read_control(deb: Path) -> str:
    """The package's control file as dpkg will record it (``dpkg-deb --field``)."""
    proc = await asyncio.create_subprocess_exec(
        "dpkg-deb", "--field", str(deb),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise LabError(f"dpkg-deb cannot read {deb.name}: {err.decode(errors='replace').strip()}")
    return out.decode()


async def _stanza(repo: Path, pkg: BuiltPackage) -> str:
    """Control fields verbatim, then the index fields (what dpkg-scanpackages writes)."""
    data = (repo / pkg.filename).read_bytes()
    return (
        (await _read_control(repo / pkg.filename)).rstrip("\n")
        + f"\nFilename: ./{pkg.filename}\nSize: {len(data)}\n"
        + f"MD5sum: {hashlib.md5(data).hexdigest()}\n"  # noqa: S324 (apt's index format)
        + f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
    )


def _release(repo: Path, index_files: list[str]) -> str:
    lines = [
        "Origin: mssp-lab",
        "Label: mssp-lab",
        "Suite: lab",
        "Codename: lab",
        time.strftime("Date: %a, %d %b %Y %H:%M:%S UTC", time.gmtime()),
        "Architectures: all amd64 arm64",
        "Components: main",
        "Description: mssp lab repository (generated, offline)",
        "SHA256:",
    ]
    for name in index_files:
        data = (repo / name).read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}")
    return "\n".join(lines) + "\n"


async def build_repository(repo: Path, scratch: Path) -> list[BuiltPackage]:
    """Build every package in both versions into ``repo`` (flat layout) with its indexes."""
    if shutil.which("dpkg-deb") is None:
        raise LabError("dpkg-deb is missing: install dpkg (scripts/bootstrap.sh does)")
    (repo / "pool").mkdir(parents=True, exist_ok=True)
    built: list[BuiltPackage] = []
    jobs = []
    for name in PACKAGES:
        for version in (OLD_VERSION, NEW_VERSION):
            tree = scratch / f"{name}_{version}"
            _write_tree(tree, name, version)
            filename = f"pool/{name}_{version}_all.deb"
            built.append(BuiltPackage(name, version, filename))
            jobs.append(_build_deb(tree, repo / filename))
    await asyncio.gather(*jobs)
    packages = "\n".join(await asyncio.gather(*(_stanza(repo, pkg) for pkg in built)))
    (repo / "Packages").write_text(packages)
    (repo / "Packages.gz").write_bytes(gzip.compress(packages.encode(), mtime=0))
    (repo / "Release").write_text(_release(repo, ["Packages", "Packages.gz"]))
    return built
