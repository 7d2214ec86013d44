"""Issue 9 on the lab: `mssp forward` carries HTTP to a web server on a host of the relay-only site.

The site (lab-globex/branch) has no path from the core: its hosts are reached only through the lab's
real relay (root namespace) and the real agent in the site (`mssp lab relay up`, stopped at the
end). A web server (`python3 -m http.server` on the host's own 127.0.1.x address) is started on
a relayed host through `mssp exec`; `mssp forward HOST PORT` runs as a subprocess against the lab's
MSSP_HOME; an HTTP client fetches pages through the printed local port; Ctrl-C (SIGINT) ends the
command and the forward with it. Uses the session's shared lab; needs root; fails, never skips.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import secrets
import selectors
import signal
import socket
import subprocess
import time
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from mssp.lab.state import HostState

from .conftest import MSSP, LabHandle, run_mssp

pytestmark = pytest.mark.lab

ANNOUNCE = re.compile(r"^(127\.0\.0\.1):(\d+) -> (\S+):(\d+) on (\S+) \(via (\w+)\); Ctrl-C stops$")


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def exec_on(lab: LabHandle, host: HostState, command: str) -> str:
    """Run ``command`` on ``host`` through `mssp exec` (the relay path); its stdout."""
    result = run_mssp(lab.env, "exec", host.full_name, "--json", "--timeout", "60s", "--",
                      command)  # fmt: skip
    run = json.loads(result.stdout)
    (outcome,) = run["hosts"]
    assert result.returncode == 0 and outcome["state"] == "ok", (result.stderr, outcome)
    return outcome["stdout"]


def site_rules(netns: str) -> list[str]:
    out = subprocess.run(["ip", "-n", netns, "rule", "show"], capture_output=True, text=True,
                         timeout=20, check=True)  # fmt: skip
    return [" ".join(line.split()) for line in out.stdout.splitlines()]


def restore_rules(netns: str, before: list[str]) -> None:
    """Put the site's policy routing back as it was (`lab relay down` leaves its rules today)."""
    after = site_rules(netns)
    if after == before:
        return
    warnings.warn(
        f"`mssp lab relay down` left the relay-only site's routing rules changed: {after} "
        f"instead of {before}; restored here, or the next `lab relay up` fails "
        "(`rule del pref 32766`: No such file or directory)",
        stacklevel=1,
    )
    for line in set(after) - set(before):
        subprocess.run(["ip", "-n", netns, "rule", "del", "pref", line.split(":")[0]], check=True)
    for line in set(before) - set(after):
        pref, spec = line.split(":", 1)
        subprocess.run(["ip", "-n", netns, "rule", "add", "pref", pref, *spec.split()], check=True)
    assert site_rules(netns) == before


@pytest.fixture(scope="module")
def relayed(lab: LabHandle) -> Iterator[LabHandle]:
    netns = lab.netns_of(lab.hosts(reach="relay")[0])
    rules = site_rules(netns)
    ok(run_mssp(lab.env, "lab", "relay", "up", "--json", timeout=180))
    try:
        yield lab
    finally:
        ok(run_mssp(lab.env, "lab", "relay", "down", "--json"))
        status = json.loads(run_mssp(lab.env, "lab", "relay", "status", "--json").stdout)
        assert status == {"running": False}
        restore_rules(netns, rules)


@dataclass(frozen=True)
class WebServer:
    host: HostState
    port: int
    pid: int
    nonce: str
    big_sha256: str
    """SHA-256 of /big.bin (2 MiB of random bytes made in the host)."""
    root: str


@pytest.fixture
def web_server(relayed: LabHandle) -> Iterator[WebServer]:
    host = relayed.hosts(reach="relay")[-1]
    nonce = secrets.token_hex(8)
    port = 20000 + secrets.randbelow(10000)
    root = f"/srv/www-{nonce}"
    out = exec_on(relayed, host, (
        f"set -e; mkdir -p {root}; "
        f'printf "<html><body>mssp-lab-page {nonce} on %s</body></html>\\n" "$(hostname)" '
        f"> {root}/index.html; head -c 2097152 /dev/urandom > {root}/big.bin; "
        f"nohup setsid python3 -m http.server {port} --bind {host.address} --directory {root} "
        f">/tmp/http-{nonce}.log 2>&1 </dev/null & "
        f"echo pid=$!; sha256sum {root}/big.bin; "
        f"for i in $(seq 100); do bash -c 'echo > /dev/tcp/{host.address}/{port}' 2>/dev/null "
        "&& exit 0; sleep 0.1; done; echo 'web server did not start' >&2; exit 1"
    ))  # fmt: skip
    pid = int(re.search(r"pid=(\d+)", out).group(1))
    big = re.search(r"^([0-9a-f]{64}) ", out, re.M).group(1)
    server = WebServer(host, port, pid, nonce, big, root)
    try:
        yield server
    finally:
        gone = exec_on(relayed, host, (
            f"kill {pid}; for i in $(seq 50); do kill -0 {pid} 2>/dev/null || break; sleep 0.1; "
            f"done; kill -0 {pid} 2>/dev/null && echo alive || echo gone; rm -rf {root}"
        ))  # fmt: skip
        assert gone.strip() == "gone"


class Forward:
    """`mssp forward` as a user runs it: a subprocess that prints its local address."""

    def __init__(self, lab: LabHandle, *args: str) -> None:
        self.proc = subprocess.Popen(
            [MSSP, "forward", *args], env=lab.env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def announced(self, timeout: float = 60) -> re.Match[str]:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                self.stop()
                raise AssertionError(f"`mssp forward` printed nothing in {timeout} s")
        line = self.proc.stdout.readline().strip()
        match = ANNOUNCE.match(line)
        if match is None:
            _, err = self.stop()
            raise AssertionError(f"unexpected output {line!r}; stderr: {err}")
        return match

    def stop(self) -> tuple[int, str]:
        """Ctrl-C, as a user ends it; (exit status, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"`mssp forward` did not stop on Ctrl-C: {err}") from None
        return self.proc.returncode, err


def fetch(port: int, path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=20) as response:
        return response.status, response.read()


def established(lab: LabHandle, host: HostState, port: int) -> list[str]:
    """TCP connections to the web server's port open in the site's namespace."""
    out = lab.in_site(host, ["ss", "-Htn", "state", "established", f"( sport = :{port} )"])
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_forward_carries_http_to_a_web_server_on_a_relay_only_host(
    relayed: LabHandle, web_server: WebServer
) -> None:
    host, port = web_server.host, web_server.port
    # nothing answers there from the core's network: the forward is the only way in
    with pytest.raises(OSError):
        socket.create_connection((host.address, port), timeout=3).close()

    forward = Forward(relayed, host.full_name, str(port), "--to", host.address)
    try:
        local, lport, target, tport, name, path = forward.announced().groups()
        assert (target, int(tport), name, path) == (host.address, port, host.full_name, "ssh")
        lport = int(lport)
        probe = secrets.token_hex(6)
        status, page = fetch(lport, f"/index.html?probe={probe}")
        assert status == 200
        assert page.decode() == (
            f"<html><body>mssp-lab-page {web_server.nonce} on {host.hostname}</body></html>\n"
        )
        status, big = fetch(lport, "/big.bin")
        assert status == 200 and len(big) == 2 * 1024 * 1024
        assert hashlib.sha256(big).hexdigest() == web_server.big_sha256
        # the host's web server logged our request
        log = exec_on(relayed, host, f"cat /tmp/http-{web_server.nonce}.log")
        assert f'"GET /index.html?probe={probe} HTTP/1.1" 200' in log, log
        assert forward.proc.poll() is None  # still forwarding
    finally:
        code, err = forward.stop()
    assert code == 0, err
    assert "forward closed: 2 connection(s), 0 refused" in err, err
    # the forward ended with the command: the local port is closed ...
    with pytest.raises(OSError):
        socket.create_connection((local, lport), timeout=3).close()
    # ... and no connection to the web server is left open in the site
    deadline = time.monotonic() + 10
    while established(relayed, host, port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert established(relayed, host, port) == []
    # audited when it opened and when it closed, with its counters
    entries = json.loads(
        ok(run_mssp(relayed.env, "audit", "list", "--action", "forward", "--json")).stdout
    )
    mine = [e for e in entries if e.get("target") == host.full_name]
    assert [e["result"] for e in mine[-2:]] == ["intent", "ok"], mine
    detail = mine[-1]["detail"]
    assert detail["connections"] == 2 and detail["bytes_in"] > 2 * 1024 * 1024, detail


def test_forward_to_a_closed_port_says_why(relayed: LabHandle, web_server: WebServer) -> None:
    host = web_server.host
    closed = web_server.port + 1 if web_server.port < 65535 else web_server.port - 1
    forward = Forward(relayed, host.full_name, str(closed), "--to", host.address)
    try:
        lport = int(forward.announced().group(2))
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError, OSError)):
            fetch(lport, "/")
    finally:
        code, err = forward.stop()
    assert code == 0, err
    assert f"{host.address}:{closed} on {host.full_name} refused the connection" in err, err
    assert "forward closed: 1 connection(s), 1 refused" in err, err
