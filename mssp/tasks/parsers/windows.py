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
    """Parse a script's JSON reply (a BOM or CR/LF around it is harmless).

    Hostile but well-formed JSON is a TaskError too: deep nesting (RecursionError) and integers
    of more than 4,300 digits (ValueError)."""
    try:
        return json.loads(text.strip().lstrip("\ufeff") or "null")
    except (ValueError, RecursionError):
        raise TaskError(
            f"unexpected reply from the {what} script: {text.strip()[:120]!r}"
        ) from None


def load_object(text: str, what: str) -> dict[str, Any]:
    """A reply that must be one JSON object (``null`` or ``""``, PowerShell's "nothing", is {})."""
    return as_object(load_json(text, what), what)


def as_object(value: Any, what: str) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise TaskError(f"unexpected reply from the {what} script: expected a JSON object")
    return value


def as_objects(value: Any, what: str) -> list[dict[str, Any]]:
    """A list of objects (or one bare object, PowerShell 5.1's one-element array)."""
    return [as_object(item, what) for item in as_list(value)]


def as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, list) else [value]


def as_int(value: Any, what: str) -> int:
    """An integer field; missing or empty is 0; anything else not an integer is a TaskError."""
    if value is None or value == "" or value is False:
        return 0
    try:
        return int(value)
    except (ValueError, TypeError, OverflowError):
        raise TaskError(f"unexpected reply from the {what} script: not a number") from None


def as_float(value: Any, what: str) -> float:
    if value is None or value == "" or value is False:
        return 0.0
    try:
        return float(value)
    except (ValueError, TypeError, OverflowError):
        raise TaskError(f"unexpected reply from the {what} script: not a number") from None


_MS_DATE = re.compile(r"/Date\((-?\d+)\)/")


def as_time(value: Any) -> str:
    """An ISO 8601 UTC text from an 'o'-formatted date or PowerShell 5.1's /Date(ms)/."""
    if not value:
        return ""
    text = str(value)
    match = _MS_DATE.search(text)
    if match:
        try:
            moment = datetime.datetime.fromtimestamp(int(match.group(1)) / 1000, datetime.UTC)
        except (ValueError, OverflowError, OSError):  # a date no clock can show: keep the text
            return text
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
    what = "Windows Update search"
    data = load_object(text, what)
    updates = []
    for item in as_objects(data.get("updates"), what):
        updates.append(
            WindowsUpdate(
                id=str(item.get("id", "")),
                title=str(item.get("title", "")),
                kb=tuple(str(k) for k in as_list(item.get("kb"))),
                severity=str(item.get("severity") or ""),
                categories=tuple(str(c) for c in as_list(item.get("categories"))),
                downloaded=bool(item.get("downloaded")),
                reboot_behavior=as_int(item.get("reboot_behavior"), what),
                size=as_int(item.get("size"), what),
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
    what = "Windows Update install"
    data = load_object(text, what)
    items = []
    for item in as_objects(data.get("updates"), what):
        items.append(
            InstalledUpdate(
                id=str(item.get("id", "")),
                title=str(item.get("title", "")),
                kb=tuple(str(k) for k in as_list(item.get("kb"))),
                result=RESULT_CODES.get(as_int(item.get("result_code"), what), "unknown"),
                hresult=as_int(item.get("hresult"), what),
                reboot_required=bool(item.get("reboot_required")),
            )
        )
    return InstallOutcome(
        result=RESULT_CODES.get(as_int(data.get("result_code"), what), "unknown"),
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
    data = load_object(text, "local user")
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
    data = load_object(text, "service")
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
    what = "facts"
    os_info = as_object(data.get("os"), what)
    memory = as_object(data.get("memory"), what)
    total, free = as_int(memory.get("total"), what), as_int(memory.get("free"), what)
    cpu = as_object(data.get("cpu"), what)
    build = str(os_info.get("build", ""))
    ubr = os_info.get("ubr")
    disks = []
    for disk in as_objects(data.get("disks"), what):
        size, avail = as_int(disk.get("size"), what), as_int(disk.get("free"), what)
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
        for u in as_objects(data.get("users"), what)
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
        "uptime_seconds": as_float(data.get("uptime_seconds"), what),
        "last_boot": as_time(data.get("last_boot")),
        "cpu": {
            "count": as_int(cpu.get("count"), what),
            "load_percent": as_int(cpu.get("load_percent"), what),
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
