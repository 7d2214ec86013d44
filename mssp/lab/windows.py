"""The lab's SIMULATED Windows host: the WS-Management endpoint of mssp/lab/winrm_endpoint.py
(pywinrm's shell protocol answered from recorded PowerShell/cmd.exe replies) served inside a
site's network namespace over HTTPS with NTLM. It is not Windows and nothing pretends otherwise:
its tags say "simulated", and `lab up` prints a note.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mssp.errors import LabError
from mssp.lab.layout import HostPlan
from mssp.lab.state import ProcessRef, alive, process_start_time

ADMIN_USER = "Administrator"
NOTE = (
    "{name} is a SIMULATED Windows host: a WS-Management endpoint answering from recorded "
    "PowerShell replies (mssp/lab/winrm_recordings), not a Windows machine"
)


@dataclass(frozen=True)
class WindowsLaunch:
    """A started endpoint and the inventory options that reach it."""

    process: ProcessRef
    options: dict[str, str]


def launch_windows(netns: str, host_dir: Path, host: HostPlan, password: str) -> WindowsLaunch:
    """Start the endpoint in the site's namespace; readiness: ``wait_windows_ready``."""
    from mssp.lab.winrm_pki import make_test_pki  # aiohttp/pyspnego: only when asked for

    host_dir.mkdir(parents=True, exist_ok=True)
    tls = make_test_pki(host_dir / "tls", (host.address, host.hostname))
    users = host_dir / "users"
    users.touch(mode=0o600)
    users.write_text(f"{ADMIN_USER}:{password}\n")
    log = open(host_dir / "endpoint.log", "wb")
    try:
        proc = subprocess.Popen(
            [
                "nsenter", f"--net=/run/netns/{netns}",
                sys.executable, "-m", "mssp.lab.winrm_endpoint",
                "--host", host.address, "--port", str(host.port),
                "--tls-dir", str(tls.cert.parent), "--users-file", str(users),
            ],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True, close_fds=True,
        )  # fmt: skip
    except OSError as exc:
        raise LabError(f"cannot start the simulated Windows host: {exc}") from None
    finally:
        log.close()
    ref = ProcessRef(proc.pid, process_start_time(proc.pid) or 0)
    options = {"scheme": "https", "auth": "ntlm", "cert_sha256": tls.cert_sha256}
    return WindowsLaunch(ref, options)


def _log(host_dir: Path) -> str:
    try:
        return (host_dir / "endpoint.log").read_text(errors="replace")
    except FileNotFoundError:
        return ""


async def wait_windows_ready(ref: ProcessRef, host_dir: Path, deadline: float) -> ProcessRef:
    """Wait for the endpoint's "listening on" line."""
    while "listening on" not in _log(host_dir):
        if not alive(ref) or time.monotonic() > deadline:
            tail = _log(host_dir).strip().splitlines()[-2:]
            raise LabError(f"the simulated Windows host did not start: {' | '.join(tail)}")
        await asyncio.sleep(0.05)
    return ref
