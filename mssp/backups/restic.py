"""restic on a POSIX host: the command lines we send and parsers for what restic prints.

Commands are argument lists quoted for ``sh``; the repository and its password never appear in
them: they travel as RESTIC_REPOSITORY / RESTIC_PASSWORD in the environment (which the SSH
connector delivers on stdin). Parsers take captured output and are tested without hosts.
Written against restic 0.14 (Debian 12); later versions print the same JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mssp.backups.evidence import Access, CheckEvidence, SnapshotInfo
from mssp.backups.policy import Subset
from mssp.tasks.validate import quote, quote_all

CANARY_TAG = "mssp-canary-sha256="
MSSP_TAG = "mssp"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_READ_GROUP = re.compile(r"read group #(\d+) of (\d+) data packs")
_READ_ALL = re.compile(r"read all data")
_CREATED = re.compile(r"created restic repository ([0-9a-f]+)")
# Lines restic check prints while all is well (progress, phases), not errors.
_CHECK_INFO = (
    "using temporary cache",
    "created new cache",
    "create exclusive lock",
    "load indexes",
    "check all packs",
    "check snapshots, trees and blobs",
    "no errors were found",
    "read group",
    "read all data",
    "check for unused",
    "[",
    "Fatal: repository contains errors",
)


# ---- the repository as shown to people ------------------------------------------------------
def display_repository(repository: str) -> str:
    """The repository without any ``user:password@`` of a URL backend (rest:, s3: endpoints...)."""
    backend, sep, rest = repository.partition(":")
    for prefix, url in ((backend + sep, rest), ("", repository)):
        if "://" in url:
            parts = urlsplit(url)
            if parts.password is not None or parts.username is not None:
                host = parts.hostname or ""
                if parts.port:
                    host += f":{parts.port}"
                return prefix + urlunsplit(parts._replace(netloc=host))
            return repository
    return repository


# ---- environment and command lines --------------------------------------------------------
def environment(repository: str, password: str) -> dict[str, str]:
    """The variables every restic command gets (never command-line options)."""
    return {"RESTIC_REPOSITORY": repository, "RESTIC_PASSWORD": password}


@dataclass(frozen=True)
class Restic:
    """Builds restic command lines for one binary (``restic`` or an absolute path)."""

    binary: str = "restic"

    def line(self, *args: str) -> str:
        return quote_all([self.binary, *args])

    def version(self) -> str:
        return self.line("version")

    def init(self) -> str:
        return self.line("init")

    def config_exists(self) -> str:
        """Exit 0 when a repository with this password exists (reads only its config)."""
        return self.line("--no-lock", "cat", "config")

    def snapshots(self, host: str) -> str:
        return self.line("--no-lock", "snapshots", "--json", *(("--host", host) if host else ()))

    def indexes(self) -> str:
        """Every index file, one JSON document per line (pack ids and blob sizes)."""
        b = quote(self.binary)
        return (
            f"ids=$({b} --no-lock list index) || exit $?; "
            f'for id in $ids; do {b} --no-lock cat index "$id" || exit $?; echo; done'
        )

    def check(self, subset: Subset) -> str:
        # merged streams keep restic's order: errors print between the phase headers
        return self.line("check", f"--read-data-subset={subset}") + " 2>&1"

    def ls(self, snapshot_id: str) -> str:
        return self.line("--no-lock", "ls", "--json", snapshot_id)

    def backup(
        self, paths: Sequence[str], *, host: str, tags: Iterable[str], time: str = ""
    ) -> str:
        args = ["backup", "--json", "--host", host]
        for tag in tags:
            args += ["--tag", tag]
        if time:
            args += ["--time", time]
        return self.line(*args, "--", *paths)

    def forget(self, *, host: str, keep: Sequence[str], prune: bool) -> str:
        args = ["forget", "--host", host, "--tag", MSSP_TAG, *keep]
        if prune:
            args.append("--prune")
        return self.line(*args)

    def restore_script(self, snapshot_id: str, files: Sequence[str], *, scratch_base: str) -> str:
        """Restore ``files`` into a fresh scratch directory, hash them, hash the live copies and a
        second read (restic dump), remove the scratch directory. One line per fact on stdout."""
        b = quote(self.binary)
        sid = quote(snapshot_id)
        includes = " ".join(f"--include {quote(f)}" for f in files)
        lines = [
            f"scratch=$(mktemp -d {quote(scratch_base.rstrip('/') or '/')}/mssp-verify.XXXXXX)"
            " || { echo 'scratch-failed'; exit 0; }",
            "trap 'rm -rf \"$scratch\"' EXIT",
            "start=$(date +%s.%N)",
            f'rc=0; {b} --no-lock restore {sid} --target "$scratch" {includes} 1>&2 || rc=$?',
            'echo "restore-exit $rc $start $(date +%s.%N)"',
        ]
        for path in files:
            q = quote(path)
            lines += [
                f'f="$scratch"{q}',
                'if [ -f "$f" ]; then echo "restored $(stat -c %s "$f")'
                ' $(sha256sum < "$f" | cut -c1-64)"; else echo "restored -"; fi',
                f"if [ -f {q} ]; then echo \"live $(stat -c '%s %Y' {q})"
                f' $(sha256sum < {q} | cut -c1-64)"; else echo "live -"; fi',
                f'if {b} --no-lock dump {sid} {q} > "$scratch/.mssp-dump" 2>/dev/null; then '
                'echo "dump $(sha256sum < "$scratch/.mssp-dump" | cut -c1-64)"; '
                'else echo "dump -"; fi',
            ]
        lines += [
            'rm -rf "$scratch"',
            'if [ -e "$scratch" ]; then echo scratch-kept; else echo scratch-removed; fi',
        ]
        return "\n".join(lines)


# ---- parsers ------------------------------------------------------------------------------
def parse_time(text: str) -> datetime:
    """restic's RFC 3339 times carry nanoseconds; Python takes microseconds."""
    match = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text.strip())
    if match is None:
        raise ValueError(f"not a restic time: {text!r}")
    base, frac, zone = match.groups()
    micro = (frac or "0")[:6].ljust(6, "0")
    stamp = datetime.fromisoformat(f"{base}.{micro}{'+00:00' if zone == 'Z' else zone}")
    return stamp.astimezone(UTC)


def _loads(text: str) -> Any:
    """json.loads whose only error is ValueError (hostile nesting raises RecursionError)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def parse_snapshots(text: str) -> list[SnapshotInfo]:
    """``snapshots --json``, oldest first. ValueError on anything that is not that."""
    data = _loads(text or "[]")
    if data is None:
        return []
    if not isinstance(data, list):
        raise ValueError("restic snapshots --json did not print a list")
    try:
        snapshots = [
            SnapshotInfo(
                id=str(item["id"]),
                short_id=str(item.get("short_id") or item["id"][:8]),
                time=parse_time(str(item["time"])),
                hostname=str(item.get("hostname", "")),
                paths=tuple(str(p) for p in item.get("paths") or ()),
                tags=tuple(str(t) for t in item.get("tags") or ()),
            )
            for item in data
        ]
    except (KeyError, TypeError, AttributeError):
        raise ValueError("restic snapshots --json printed a snapshot without id or time") from None
    return sorted(snapshots, key=lambda s: s.time)


def canary_hash(snapshot: SnapshotInfo) -> str:
    """The canary hash the backup task recorded in the snapshot's tags ("" if none)."""
    for tag in snapshot.tags:
        if tag.startswith(CANARY_TAG) and _HEX64.fullmatch(tag[len(CANARY_TAG) :]):
            return tag[len(CANARY_TAG) :]
    return ""


def parse_indexes(text: str) -> dict[str, int]:
    """Pack id → bytes (the end of its last blob) from ``cat index`` documents, one per line."""
    packs: dict[str, int] = {}
    decoder = json.JSONDecoder()
    pos = 0
    text = text.strip()
    while pos < len(text):
        try:
            doc, end = decoder.raw_decode(text, pos)
        except RecursionError:
            raise ValueError("restic index nested too deeply") from None
        if not isinstance(doc, dict):
            raise ValueError("restic cat index printed something other than an index")
        try:
            for pack in doc.get("packs") or ():
                blobs = pack.get("blobs") or ()
                size = max((int(b["offset"]) + int(b["length"]) for b in blobs), default=0)
                packs[str(pack["id"])] = max(size, packs.get(str(pack["id"]), 0))
        except (KeyError, TypeError, AttributeError):
            raise ValueError("restic index entry without pack id, offset or length") from None
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return packs


def choose_subset(first: Subset, packs: Mapping[str, int]) -> Subset:
    """Tonight's group, or the next one holding packs (an empty group would read nothing)."""
    if not packs:
        return first
    for step in range(first.total):
        candidate = Subset((first.n - 1 + step) % first.total + 1, first.total)
        if any(candidate.holds(p) for p in packs):
            return candidate
    return first


def classify_failure(exit_status: int | None, output: str) -> tuple[Access, str]:
    """Why restic could not open the repository, from its exit status and messages.

    Network words come before "is there a repository": restic asks that for a server it could
    not even reach.
    """
    low = output.lower()
    message = fatal_line(output)
    if exit_status == 127 or "restic: not found" in low or "command not found" in low:
        return Access.TOOL_MISSING, ""
    if "wrong password" in low or "no key found" in low:
        return Access.WRONG_PASSWORD, ""
    if any(
        word in low
        for word in (
            "connection refused",
            "no route to host",
            "network is unreachable",
            "i/o timeout",
            "dial tcp",
            "ssh command exited",
            "unable to start the sftp session",
            "connection closed",
            "no such host",
        )
    ):
        return Access.UNREACHABLE, message
    if "already locked" in low or "unable to create lock" in low:
        return Access.LOCKED, message
    if (
        "unable to open config file" in low
        or "is there a repository at" in low
        or "repository does not exist" in low
    ):
        return Access.NO_REPOSITORY, ""
    return Access.ERROR, message


def fatal_line(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("Fatal:"):
            return line[len("Fatal:") :].strip()[:200]
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def parse_check(
    exit_status: int | None,
    output: str,
    *,
    subset: Subset,
    packs: Mapping[str, int],
    duration: float,
) -> CheckEvidence:
    """``check --read-data-subset`` with merged streams: which phase failed, what was read."""
    structural_errors: list[str] = []
    read_errors: list[str] = []
    reading = False
    packs_read = 0
    for raw in output.splitlines():
        line = raw.strip()
        group = _READ_GROUP.search(line)
        if group or _READ_ALL.search(line):
            reading = True
            if group:
                packs_read = int(group.group(2))
            continue
        if not line or line.startswith(_CHECK_INFO):
            continue
        (read_errors if reading else structural_errors).append(line[:300])
    ok = exit_status == 0
    if not ok and not structural_errors and not read_errors:
        # failed without a recognisable error line: blame the phase it stopped in
        (read_errors if reading else structural_errors).append(
            f"restic check exited with status {exit_status}"
        )
    selected = [size for pack_id, size in packs.items() if subset.holds(pack_id)]
    return CheckEvidence(
        exit_status=exit_status,
        structural_ok=not structural_errors,
        read_ok=reading and not read_errors and ok,
        subset=str(subset),
        packs_read=packs_read,
        bytes_read=sum(selected) if packs_read else 0,
        errors=tuple((structural_errors + read_errors)[:5]),
        duration=duration,
    )


@dataclass(frozen=True)
class Node:
    """A file in a snapshot (``ls --json``)."""

    path: str
    size: int
    mtime: datetime | None


def parse_ls(text: str) -> list[Node]:
    """Regular files of ``ls --json`` (one JSON object per line; a cut-off last line ignored)."""
    files = []
    for line in text.splitlines():
        try:
            item = _loads(line)
        except ValueError:
            continue
        if not isinstance(item, dict):
            continue
        if item.get("struct_type") != "node" or item.get("type") != "file":
            continue
        path = item.get("path", "")
        if not isinstance(path, str) or not path.startswith("/"):
            continue
        if any(ord(c) < 32 for c in path):
            continue  # control characters in a name: never worth the quoting risk
        mtime = None
        if isinstance(item.get("mtime"), str) and item["mtime"]:
            try:
                mtime = parse_time(item["mtime"])
            except ValueError:
                mtime = None
        try:
            size = int(item.get("size") or 0)
        except (TypeError, ValueError):
            continue
        files.append(Node(path=path, size=size, mtime=mtime))
    return files


def choose_sample(
    files: Sequence[Node], *, night: int, max_bytes: int, exclude: str
) -> Node | None:
    """A non-empty file no larger than ``max_bytes``, rotating night by night."""
    candidates = sorted(
        (f for f in files if 0 < f.size <= max_bytes and f.path != exclude), key=lambda f: f.path
    )
    if not candidates:
        return None
    return candidates[night % len(candidates)]


@dataclass(frozen=True)
class RestoreOutput:
    """What ``restore_script`` printed."""

    exit_status: int | None
    duration: float
    files: tuple[RestoredFacts, ...]
    scratch_removed: bool


@dataclass(frozen=True)
class RestoredFacts:
    restored_size: int | None
    restored_sha256: str
    live_size: int | None
    live_mtime: int | None
    live_sha256: str
    dump_sha256: str


def parse_restore(text: str, count: int) -> RestoreOutput:
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if lines and lines[0] == ["scratch-failed"]:
        return RestoreOutput(None, 0.0, (), True)
    exit_status: int | None = None
    duration = 0.0
    facts: list[RestoredFacts] = []
    current: dict[str, object] = {}
    removed = False
    for words in lines:
        kind = words[0]
        if kind == "restore-exit" and len(words) == 4:
            exit_status = int(words[1])
            duration = max(0.0, float(words[3]) - float(words[2]))
        elif kind == "restored":
            current = {"restored": words[1:]}
        elif kind == "live":
            current["live"] = words[1:]
        elif kind == "dump":
            current["dump"] = words[1:]
            facts.append(_facts(current))
            current = {}
        elif kind == "scratch-removed":
            removed = True
    return RestoreOutput(exit_status, duration, tuple(facts[:count]), removed)


def _facts(parts: Mapping[str, object]) -> RestoredFacts:
    restored = list(parts.get("restored") or ["-"])  # type: ignore[call-overload]
    live = list(parts.get("live") or ["-"])  # type: ignore[call-overload]
    dump = list(parts.get("dump") or ["-"])  # type: ignore[call-overload]
    have_restored = restored[0] != "-" and len(restored) == 2
    have_live = live[0] != "-" and len(live) == 3
    return RestoredFacts(
        restored_size=int(restored[0]) if have_restored else None,
        restored_sha256=restored[1] if have_restored else "",
        live_size=int(live[0]) if have_live else None,
        live_mtime=int(live[1]) if have_live else None,
        live_sha256=live[2] if have_live else "",
        dump_sha256=dump[0] if dump[0] != "-" else "",
    )


@dataclass(frozen=True)
class BackupSummary:
    """The summary line of ``backup --json``."""

    snapshot_id: str
    files_new: int
    files_changed: int
    data_added: int
    total_bytes: int
    duration: float


def parse_backup(text: str) -> BackupSummary:
    for line in reversed(text.splitlines()):
        try:
            item = _loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and item.get("message_type") == "summary":
            return BackupSummary(
                snapshot_id=item.get("snapshot_id", ""),
                files_new=int(item.get("files_new", 0)),
                files_changed=int(item.get("files_changed", 0)),
                data_added=int(item.get("data_added", 0)),
                total_bytes=int(item.get("total_bytes_processed", 0)),
                duration=float(item.get("total_duration", 0.0)),
            )
    raise ValueError("restic backup printed no summary")


def parse_init(text: str) -> str:
    match = _CREATED.search(text)
    return match.group(1) if match else ""
