"""Parsers of the Windows tasks' PowerShell JSON replies (Windows PowerShell 5.1 quirks included).

PowerShell 5.1's ConvertTo-Json turns a one-element array into a bare object and an empty one into
``null`` or ``""``; dates may come as ``/Date(ms)/``. ``as_list`` and ``as_time`` absorb those.
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass
from typing import Any

from mssp.errors import TaskError

RESULT_CODES = {
    0: "not started",
    1: "in progress",
    2: "succeeded",
    3: "succeeded with errors",
    4: "failed",
    5: "aborted",
}


def load_json(text: str, what: str) -> Any:
    """Parse a script's JSON reply (a BOM or CR/LF around it is harmless)."""
    try:
        return json.loads(text.strip().lstrip("\ufeff") or "null")
    except ValueError:
        raise TaskError(
            f"unexpected reply from the {what} script: {text.strip()[:120]!r}"
        ) from None


def as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, list) else [value]


_MS_DATE = re.compile(r"/Date\((-?\d+)\)/")


def as_time(value: Any) -> str:
    """An ISO 8601 UTC text from an 'o'-formatted date or PowerShell 5.1's /Date(ms)/."""
    if not value:
        return ""
    text = str(value)
    match = _MS_DATE.search(text)
    if match:
        moment = datetime.datetime.fromtimestamp(int(match.group(1)) / 1000, datetime.UTC)
        return moment.isoformat()
    return text


@dataclass(frozen=True)
class WindowsUpdate:
    """One update the Windows Update Agent offers."""

    id: str
    title: str
    kb: tuple[str, ...]
    severity: str
    categories: tuple[str, ...]
    downloaded: bool = False
    reboot_behavior: int = 0
    """0 never reboots, 1 always requires a reboot, 2 can request one."""
    size: int = 0

    @property
    def security(self) -> bool:
        return "Security Updates" in self.categories or bool(self.severity)

    @property
    def label(self) -> str:
        return ", ".join(f"KB{k}" for k in self.kb) or self.title


@dataclass(frozen=True)
class UpdateSearch:
    """What a Windows Update search found."""

    updates: tuple[WindowsUpdate, ...]
    reboot_required: bool


def parse_wu_search(text: str) -> UpdateSearch:
    data = load_json(text, "Windows Update search") or {}
    updates = []
    for item in as_list(data.get("updates")):
        updates.append(
            WindowsUpdate(
                id=str(item.get("id", "")),
                title=str(item.get("title", "")),
                kb=tuple(str(k) for k in as_list(item.get("kb"))),
                severity=str(item.get("severity") or ""),
                categories=tuple(str(c) for c in as_list(item.get("categories"))),
                downloaded=bool(item.get("downloaded")),
                reboot_behavior=int(item.get("reboot_behavior") or 0),
                size=int(item.get("size") or 0),
            )
        )
    return UpdateSearch(tuple(updates), bool(data.get("reboot_required")))


@dataclass(frozen=True)
class InstalledUpdate:
    """The installer's verdict on one update."""

    id: str
    title: str
    kb: tuple[str, ...]
    result: str
    """One of RESULT_CODES' words."""
    hresult: int
    reboot_required: bool

    @property
    def succeeded(self) -> bool:
        return self.result in ("succeeded", "succeeded with errors")


@dataclass(frozen=True)
class InstallOutcome:
    """What WU_INSTALL reported."""

    result: str
    reboot_required: bool
    updates: tuple[InstalledUpdate, ...]


def parse_wu_install(text: str) -> InstallOutcome:
    data = load_json(text, "Windows Update install") or {}
    items = []
    for item in as_list(data.get("updates")):
        items.append(
            InstalledUpdate(
                id=str(item.get("id", "")),
                title=str(item.get("title", "")),
                kb=tuple(str(k) for k in as_list(item.get("kb"))),
                result=RESULT_CODES.get(int(item.get("result_code") or 0), "unknown"),
                hresult=int(item.get("hresult") or 0),
                reboot_required=bool(item.get("reboot_required")),
            )
        )
    return InstallOutcome(
        result=RESULT_CODES.get(int(data.get("result_code") or 0), "unknown"),
        reboot_required=bool(data.get("reboot_required")),
        updates=tuple(items),
    )


def parse_hotfixes(text: str) -> dict[str, str]:
    """Get-HotFix: KB id → install date ('' when Windows does not know it)."""
    return {
        str(item.get("id", "")): str(item.get("installed_on") or "")
        for item in as_list(load_json(text, "hot-fix listing"))
        if isinstance(item, dict) and item.get("id")
    }


@dataclass(frozen=True)
class WindowsUserState:
    """One local account as USER_STATE reports it."""

    exists: bool
    administrators_group: str
    """The local name of BUILTIN\\Administrators (S-1-5-32-544): localised on some systems."""
    enabled: bool = False
    groups: tuple[str, ...] = ()
    password_set: bool = False


def parse_user_state(text: str) -> WindowsUserState:
    data = load_json(text, "local user") or {}
    return WindowsUserState(
        exists=bool(data.get("exists")),
        administrators_group=str(data.get("administrators_group") or "Administrators"),
        enabled=bool(data.get("enabled")),
        groups=tuple(str(g) for g in as_list(data.get("groups"))),
        password_set=bool(data.get("password_set")),
    )


@dataclass(frozen=True)
class WindowsService:
    """A Windows service as SERVICE_STATUS reports it."""

    name: str
    exists: bool
    display_name: str = ""
    status: str = ""
    """Running, Stopped, StartPending, ..."""
    start_type: str = ""


def parse_service(text: str) -> WindowsService:
    data = load_json(text, "service") or {}
    return WindowsService(
        name=str(data.get("name", "")),
        exists=bool(data.get("exists")),
        display_name=str(data.get("display_name") or ""),
        status=str(data.get("status") or ""),
        start_type=str(data.get("start_type") or ""),
    )


def parse_facts(text: str) -> dict[str, Any]:
    """The FACTS reply in the same shape as the Linux facts (see mssp.tasks.facts)."""
    data = load_json(text, "facts")
    if not isinstance(data, dict) or "os" not in data:
        raise TaskError("the facts script returned no operating-system data")
    os_info = data.get("os") or {}
    memory = data.get("memory") or {}
    total, free = int(memory.get("total") or 0), int(memory.get("free") or 0)
    cpu = data.get("cpu") or {}
    build = str(os_info.get("build", ""))
    ubr = os_info.get("ubr")
    disks = []
    for disk in as_list(data.get("disks")):
        size, avail = int(disk.get("size") or 0), int(disk.get("free") or 0)
        disks.append(
            {
                "mount": str(disk.get("mount", "")),
                "device": str(disk.get("label") or disk.get("mount", "")),
                "size": size,
                "used": size - avail,
                "available": avail,
                "used_percent": round(100 * (size - avail) / size) if size else 0,
            }
        )
    admins = {str(m).rsplit("\\", 1)[-1].lower() for m in as_list(data.get("administrators"))}
    users = [
        {
            "name": str(u.get("name", "")),
            "enabled": bool(u.get("enabled")),
            "admin": str(u.get("name", "")).lower() in admins,
            "last_logon": as_time(u.get("last_logon")),
        }
        for u in as_list(data.get("users"))
    ]
    return {
        "os": {
            "family": "windows",
            "id": "windows",
            "name": str(os_info.get("caption", "Windows")),
            "version": str(os_info.get("display_version") or os_info.get("version", "")),
            "pretty_name": str(os_info.get("caption", "Windows")),
            "build": f"{build}.{ubr}" if ubr not in (None, "") else build,
        },
        "hostname": str(data.get("hostname", "")),
        "kernel": {
            "name": "Windows NT",
            "release": str(os_info.get("version", "")),
            "machine": str(os_info.get("architecture", "")),
        },
        "uptime_seconds": float(data.get("uptime_seconds") or 0),
        "last_boot": as_time(data.get("last_boot")),
        "cpu": {
            "count": int(cpu.get("count") or 0),
            "load_percent": int(cpu.get("load_percent") or 0),
        },
        "memory": {
            "total": total,
            "available": free,
            "used_percent": round(100 * (total - free) / total, 1) if total else 0.0,
        },
        "disks": disks,
        "package_manager": "windows-update",
        "reboot_required": bool(data.get("reboot_required")),
        "users": users,
    }
