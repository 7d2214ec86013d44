"""Parsers of service-manager output: systemctl show, SysV/OpenRC status exit codes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceStatus:
    """A service as the host's service manager sees it."""

    name: str
    manager: str
    """systemd, sysv, openrc or windows."""
    exists: bool
    active: bool
    state: str
    """systemd ActiveState/SubState ("active/running"), Windows status, or "running"/"stopped"."""
    enabled: str = ""
    """systemd UnitFileState or the Windows start type; '' when unknown."""
    main_pid: int = 0


def parse_systemctl_show(name: str, text: str) -> ServiceStatus:
    """``systemctl show -p LoadState -p ActiveState -p SubState -p UnitFileState -p MainPID``."""
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    load = values.get("LoadState", "")
    active = values.get("ActiveState", "")
    sub = values.get("SubState", "")
    pid = values.get("MainPID", "0")
    return ServiceStatus(
        name=name,
        manager="systemd",
        exists=load not in ("not-found", ""),
        active=active in ("active", "reloading"),
        state=f"{active}/{sub}" if sub else active,
        enabled=values.get("UnitFileState", ""),
        main_pid=int(pid) if pid.isdigit() else 0,
    )


def parse_init_status(
    name: str, manager: str, exit_status: int | None, present: bool
) -> ServiceStatus:
    """LSB init-script / OpenRC status by exit code: 0 running, 3 stopped, 4 unknown service."""
    if not present or exit_status == 4:
        return ServiceStatus(name, manager, exists=False, active=False, state="not found")
    if exit_status == 0:
        return ServiceStatus(name, manager, exists=True, active=True, state="running")
    if exit_status in (1, 2, 3):
        return ServiceStatus(name, manager, exists=True, active=False, state="stopped")
    return ServiceStatus(name, manager, exists=True, active=False, state=f"unknown ({exit_status})")
