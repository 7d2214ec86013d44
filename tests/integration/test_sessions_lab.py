"""Lab-backed: `mssp ssh` to a real lab host (OpenSSH sshd in namespaces) through a PTY, with the
real `admin` user's sudo password typed at the prompt of a recorded session. Uses the session's
shared lab (conftest.py). Needs root; fails, never skips."""

from __future__ import annotations

import json
import subprocess
import termios
from pathlib import Path

import pytest

from mssp import asciicast
from tests.sessions.ptyproc import PtyProcess

from .conftest import MSSP, LabHandle

pytestmark = pytest.mark.lab


def _recordings(env: dict[str, str], mssp: str) -> list[dict]:
    out = subprocess.run(
        [mssp, "recordings", "list", "--json"], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_ssh_to_a_lab_host_with_sudo_password_not_recorded(lab: LabHandle) -> None:
    host = lab.hosts(reach="direct")[0]
    password = lab.admin_password.encode()
    before = {r["id"] for r in _recordings(lab.env, MSSP)}
    term = PtyProcess([MSSP, "ssh", host.full_name], lab.env, cols=90, rows=25)
    try:
        term.expect(rb"[#$] $", timeout=30)
        assert not term.attrs()[3] & termios.ECHO  # our terminal is raw during the session
        term.send(b"hostname; stty size\r")
        term.expect(rb"25 90")
        term.resize(132, 43)
        for _ in range(50):
            mark = len(term.output)
            term.send(b"stty size\r")
            if term.expect(rb"\r(\d+ \d+)\r\n", start=mark).group(1) == b"43 132":
                break
        else:
            raise AssertionError("resize not seen by the lab host")
        # the real sudo of the lab's admin user, with the real password, at a no-echo prompt
        term.send(
            b"setpriv --reuid=admin --regid=admin --init-groups "
            b"sudo -k -p LAB-SUDO-$((6*7)): id -u\r"
        )
        prompt = term.expect(rb"LAB-SUDO-42:")
        term.send(password + b"\r")
        term.expect(rb"\r\n0\r\n", start=prompt.end())  # sudo accepted it: id -u is 0
        term.send(b"exit 3\r")
        assert term.wait(30) == 3
        assert term.attrs() == term.initial_attrs
    finally:
        term.close()
    assert password not in term.output
    (rec,) = [r for r in _recordings(lab.env, MSSP) if r["id"] not in before]
    raw = Path(rec["path"]).read_bytes()
    assert password not in raw and b"LAB-SUDO-42:" in raw
    header, events = asciicast.read(Path(rec["path"]))
    assert (header.width, header.height) == (90, 25)
    shown = asciicast.output_text(events)
    assert "43 132" in shown and shown in term.output.decode("utf-8", "replace")
    assert rec["exit_status"] == 3
