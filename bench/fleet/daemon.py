"""`mssp exec` handed to a running `mssp daemon` (mssp/handoff.py), as a bench tool.

Two variants, each with its own daemon on its own copy of the prepared mssp home (one daemon
serves one home):
- ``mssp-daemon``: the daemon closes a connection 0.05 s after its last use
  (MSSP_IDLE_CLOSE), so every timed run opens new connections: a cold run without the command's
  own start-up cost (imports, Argon2id vault unlock). The sshd CPU per host column shows it: a
  new login costs ~16 ms there, a command on an open connection ~2-4 ms.
- ``mssp-pooled``: the daemon's default (connections kept 300 s), i.e. a user's second command.

The clients run without MSSP_VAULT_PASSPHRASE: without the daemon they could not run at all, so
a complete run proves the hand-off. CPU and memory count the daemon too: its CPU delta over the
invocation is added to the client tree's, its PSS to the client's peak.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from measure import KEEP, pss_kb
from setup_tools import MSSP, Setup

from mssp.config import load_settings
from mssp.handoff import socket_path

VARIANTS = {"mssp-daemon": "0.05", "mssp-pooled": "300"}
"""tool -> the daemon's idle_close (seconds)."""


class Daemon:
    def __init__(self, setup: Setup, tool: str) -> None:
        self.tool = tool
        self.home = setup.scratch / f"{tool}-home"
        if not self.home.exists():
            shutil.copytree(setup.mssp_home, self.home, symlinks=True)
        self.env = dict(setup.mssp_env(), MSSP_HOME=str(self.home))
        self.env["MSSP_IDLE_CLOSE"] = VARIANTS[tool]
        self.client_env = {k: v for k, v in self.env.items() if k != "MSSP_VAULT_PASSPHRASE"}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = setup.scratch / f"{tool}-daemon.log"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(MSSP), "daemon", "--poll", "30"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        KEEP.add(self.proc.pid)
        sock = socket_path(load_settings({"MSSP_HOME": str(self.home)}))
        deadline = time.monotonic() + 60
        while not sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.tool}: the daemon did not start: {self.log.read_text()}")
            time.sleep(0.05)

    def cpu(self) -> float:
        """user+sys seconds of the daemon so far."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def pss_mb(self) -> float:
        assert self.proc is not None
        return pss_kb(self.proc.pid) / 1024

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        KEEP.discard(self.proc.pid)
        self.proc = None
