"""The bench's target hosts: one Debian sshd in a private network + mount namespace, answering on
N distinct loopback addresses (127.0.X.Y), root login by a generated key, curve25519 only.

Why a namespace: OpenSSH binds at most 16 listen sockets, so one sshd serving 500 addresses
listens on 0.0.0.0 — in a fresh network namespace whose only interface is ``lo``, that is loopback
and nothing else; the client ports, TIME_WAIT sockets and sshd itself stay away from other users
of this machine. The private mount namespace lets the bench give root a plain ``~/.bashrc``:
root's real one runs ``pyenv init`` (FIELD-NOTES §2), ~100 ms per command for every tool alike,
which would measure a shell, not the tools.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
INNER_ENV = "MSSP_BENCH_INNER"
NOFILE = 65536

SSHD_CONFIG = """\
# mssp fleet bench: one sshd for every bench host (generated; thrown away after the run)
Port 22
ListenAddress 0.0.0.0
AddressFamily inet
HostKey {dir}/ssh_host_ed25519_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org
# the default 10:30:100 refuses 41-91 % of connections at N >= 200 (FIELD-NOTES §4)
MaxStartups 10000:30:20000
MaxSessions 100
LoginGraceTime 120
UseDNS no
PrintMotd no
PrintLastLog no
AllowAgentForwarding no
X11Forwarding no
LogLevel ERROR
"""


def address(index: int) -> str:
    """Host ``index`` (0-based): 127.0.1.1 ... 127.0.1.250, 127.0.2.1 ... (254 per /24 at most)."""
    return f"127.0.{1 + index // 250}.{1 + index % 250}"


def enter_namespace(argv: list[str]) -> None:
    """Re-run this program inside a new network + mount namespace (needs root); never returns."""
    if os.environ.get(INNER_ENV) == "1":
        return
    if os.geteuid() != 0:
        sys.exit("the fleet bench needs root (namespaces, sshd, root logins)")
    unshare = shutil.which("unshare")
    if unshare is None:
        sys.exit("unshare (util-linux) is missing")
    env = dict(os.environ, **{INNER_ENV: "1"})
    os.execve(
        unshare,
        [unshare, "--net", "--mount", "--propagation", "private", "--", sys.executable, *argv],
        env,
    )


def prepare_namespace(scratch: Path) -> None:
    """Inside the namespace: loopback up, a plain ~/.bashrc for root, more file descriptors."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    bashrc = Path("/root/.bashrc")
    if bashrc.exists():
        plain = scratch / "plain-bashrc"
        plain.write_text("# mssp fleet bench: plain shell start-up\n")
        subprocess.run(["mount", "--bind", str(plain), str(bashrc)], check=True, timeout=10)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # the hard limit may be fixed by the container (20000 here): plenty for 500 hosts
    target = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@dataclass(frozen=True)
class Arena:
    """A running bench sshd and what clients need to reach it."""

    directory: Path
    client_key: Path
    host_public_key: str
    """The server's public key line ("ssh-ed25519 AAAA...")."""
    known_hosts: Path
    """OpenSSH known_hosts pinning the key for every bench address."""
    pid: int

    def addresses(self, count: int) -> list[str]:
        return [address(i) for i in range(count)]

    def server_cpu(self) -> float:
        """CPU seconds of every finished sshd session so far (the master reaps them)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        # fields[0] is field 3 of proc(5): cutime/cstime are fields 16/17
        return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        timeout=30,
    )


def start_arena(directory: Path, max_hosts: int) -> tuple[Arena, subprocess.Popen[bytes]]:
    """Generate keys and config, start sshd -D, wait until it accepts; (arena, process)."""
    directory.mkdir(parents=True, exist_ok=True)
    _keygen(directory / "ssh_host_ed25519_key", "mssp-bench-host")
    _keygen(directory / "client_key", "mssp-bench-client")
    shutil.copy(directory / "client_key.pub", directory / "authorized_keys")
    host_public = (directory / "ssh_host_ed25519_key.pub").read_text().split()
    key_line = f"{host_public[0]} {host_public[1]}"
    known = directory / "known_hosts"
    known.write_text("".join(f"{address(i)} {key_line}\n" for i in range(max_hosts)))
    (directory / "sshd_config").write_text(SSHD_CONFIG.format(dir=directory))
    # sshd refuses to start without its privilege separation directory (a fresh machine has
    # none until the openssh-server service first ran).
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    subprocess.run([SSHD, "-t", "-f", str(directory / "sshd_config")], check=True, timeout=10)
    log = open(directory / "sshd.log", "wb")
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(directory / "sshd_config")],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        close_fds=True,
    )
    log.close()
    deadline = time.monotonic() + 15
    while not (directory / "sshd.pid").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"bench sshd did not start: {(directory / 'sshd.log').read_text()}")
        time.sleep(0.02)
    arena = Arena(directory, directory / "client_key", key_line, known, proc.pid)
    return arena, proc


def stop_arena(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
