"""Fan-out and bulk transfer, relayed vs direct, through mssp's own ConnectionManager.

The hosts: one real OpenSSH sshd (a separate process, its own config and keys under a temp
directory) listening on N loopback addresses 127.0.2.1..N, so each "host" is its own address
and every login forks a real sshd session. The relay (`mssp-relay serve`) and the agent
(`mssp-agent run`, allowlist 127.0.2.0/24) are separate processes too, as in production. The core
side is this process: the same inventory hosts reached with ``via=direct`` and ``via=relay``.

    .venv/bin/python bench/relay/fanout.py [--hosts 100] [--rounds 5] [--mbytes 200]

Prints medians; needs root (sshd). Nothing outside loopback is touched.
"""

# Set-up before any measurement starts runs blocking tools (sshd, the relay CLI) on purpose.
# ruff: noqa: ASYNC110, ASYNC220, ASYNC221, ASYNC230

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import asyncssh

from mssp import db
from mssp.config import load_settings
from mssp.connections import ConnectionManager
from mssp.connectors import relay_ops, relay_store
from mssp.connectors.relay import RelayPaths, manager_options
from mssp.store import inventory as inv
from mssp.store.credentials import VaultCredentialResolver, add_credential
from mssp.store.hostkeys import DbHostKeyStore
from mssp.vault import FLOOR, Vault

BIN = Path(sys.executable).parent
SSHD_CONFIG = """\
Port {port}
{listen}
HostKey {dir}/host_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
MaxStartups 1000:30:2000
MaxSessions 100
LogLevel ERROR
Subsystem sftp internal-sftp
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sshd(
    tmp: Path, hosts: int, client_public: str
) -> tuple[list[subprocess.Popen], int, str]:
    """sshd processes listening on 127.0.2.1..hosts (OpenSSH takes at most 16 ListenAddress
    lines per process, so one process per 16 addresses), all with the same host key."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    (tmp / "host_key").write_bytes(key.export_private_key())
    os.chmod(tmp / "host_key", 0o600)
    (tmp / "authorized_keys").write_text(client_public + "\n")
    port = free_port()
    Path("/run/sshd").mkdir(exist_ok=True)
    procs = []
    for first in range(1, hosts + 1, 16):
        last = min(hosts, first + 15)
        listen = "\n".join(f"ListenAddress 127.0.2.{i}" for i in range(first, last + 1))
        config = tmp / f"sshd_config.{first}"
        config.write_text(
            SSHD_CONFIG.format(port=port, listen=listen, dir=tmp).replace(
                "sshd.pid", f"sshd.{first}.pid"
            )
        )
        # root's shell start-up on these machines runs pyenv (FIELD-NOTES §2): hide /root from
        # sshd in a private mount namespace so a command costs what it costs on a plain server
        procs.append(
            subprocess.Popen(
                [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    f"mount -t tmpfs none /root && exec /usr/sbin/sshd -D -f {config}",
                ]
            )
        )
    for i in range(1, hosts + 1):
        for _ in range(100):
            try:
                socket.create_connection((f"127.0.2.{i}", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
    return procs, port, key.export_public_key().decode().strip()


async def fan_out(manager: ConnectionManager, hosts: list) -> float:
    async def one(host) -> None:
        async with manager.connection(host) as conn:
            result = await conn.run("echo ok")
            assert result.stdout.strip() == "ok", result

    started = time.perf_counter()
    await asyncio.gather(*(one(h) for h in hosts))
    return time.perf_counter() - started


async def bulk(manager: ConnectionManager, host, payload: Path, size: int) -> float:
    async with manager.connection(host) as conn:
        started = time.perf_counter()
        result = await conn.put_file(payload, f"/tmp/mssp-bench-{host.name}.bin")
        elapsed = time.perf_counter() - started
        await conn.run(f"rm -f /tmp/mssp-bench-{host.name}.bin")
    assert result.size == size
    return size / elapsed / 1e6


async def main(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="mssp-bench-relay-"))
    settings = load_settings({"MSSP_HOME": str(tmp / "home")}).replace(
        forks=max(100, args.hosts), per_client_limit=max(100, args.hosts), connect_timeout=30.0
    )
    settings.data_dir.mkdir(parents=True)
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    sshds, port, host_key = start_sshd(tmp, args.hosts, client_key.export_public_key().decode())
    relay_dir = tmp / "relay"
    relay_port = free_port()
    relay = agent = None
    out: dict = {"hosts": args.hosts}
    try:
        async with db.database(settings):
            vault = Vault.create(settings.vault_path, "bench passphrase", kdf=FLOOR)
            public = await relay_store.ensure_core_key(vault)
            cli = [str(BIN / "mssp-relay"), "--dir", str(relay_dir)]
            init = subprocess.run([*cli, "init", "--name", "127.0.0.1", "--json"],
                                  capture_output=True, text=True, check=True)  # fmt: skip
            pin = json.loads(init.stdout)["pin"]
            subprocess.run([*cli, "core", "add", public], check=True, capture_output=True)
            relay = subprocess.Popen([*cli, "serve", "--host", "127.0.0.1", "--port",
                                      str(relay_port)], stderr=subprocess.DEVNULL)  # fmt: skip
            await asyncio.sleep(1.0)
            await relay_store.set_endpoint(vault, f"wss://127.0.0.1:{relay_port}", pin)
            await inv.create_client("bench", "Bench")
            await inv.create_site("bench", "direct", reach="direct")
            await inv.create_site("bench", "relayed", reach="relay")
            await add_credential(vault, client_slug="bench", name="default", kind="ssh-key",
                                 secret=client_key.export_private_key().decode())  # fmt: skip
            for site in ("direct", "relayed"):
                for i in range(1, args.hosts + 1):
                    await inv.create_host("bench", site, f"h{i}", address=f"127.0.2.{i}",
                                          port=port, options={})  # fmt: skip
            hosts = await inv.load_hosts()
            # pin every host key up front: first contact is not what is measured
            keys = DbHostKeyStore()
            from mssp.connectors.base import HostKeyInfo
            from mssp.store.hostkeys import fingerprint

            for h in hosts:
                await keys.pin(h, HostKeyInfo("ssh-ed25519", host_key, fingerprint(host_key)))
            direct = [h for h in hosts if h.site == "direct"]
            relayed = [h for h in hosts if h.site == "relayed"]
            paths = RelayPaths(settings, vault)
            enrolment = await relay_ops.enroll(paths, "bench/relayed")
            subprocess.run(
                [str(BIN / "mssp-agent"), "--state-dir", str(tmp / "agent"), "join", "-",
                 "--network", "127.0.2.0/24", "--port", str(port)],
                input=enrolment.token, text=True, check=True, capture_output=True,
            )  # fmt: skip
            agent = subprocess.Popen([str(BIN / "mssp-agent"), "--state-dir", str(tmp / "agent"),
                                      "run"], stderr=subprocess.DEVNULL)  # fmt: skip
            while not any(p.online for p in await paths.presence()):
                await asyncio.sleep(0.1)
            creds = VaultCredentialResolver(vault)

            def manager() -> ConnectionManager:
                return ConnectionManager(settings, credentials=creds, host_keys=keys,
                                         **manager_options(paths))  # fmt: skip

            times: dict[str, list[float]] = {"direct": [], "relayed": [], "relayed_cold": []}
            for _ in range(args.rounds):
                async with manager() as m:
                    times["direct"].append(await fan_out(m, direct))
                # the agent connection is kept by the core (one per agent): warm it first
                async with manager() as m:
                    await fan_out(m, relayed[:1])
                async with manager() as m:
                    times["relayed"].append(await fan_out(m, relayed))
                # fully cold: a new core process would also open the agent connection
                await paths.aclose()
                paths = RelayPaths(settings, vault)
                async with manager() as m:
                    times["relayed_cold"].append(await fan_out(m, relayed))
            for name, values in times.items():
                out[f"fanout_{name}_s"] = round(statistics.median(values), 3)
            out["fanout_ratio"] = round(out["fanout_relayed_s"] / out["fanout_direct_s"], 2)
            out["fanout_ratio_cold"] = round(
                out["fanout_relayed_cold_s"] / out["fanout_direct_s"], 2
            )
            size = args.mbytes << 20
            payload = tmp / "payload.bin"
            with open(payload, "wb") as f:
                block = os.urandom(1 << 20)
                for _ in range(args.mbytes):
                    f.write(block)
            async with manager() as m:
                out["bulk_direct_MBps"] = round(
                    statistics.median([await bulk(m, direct[0], payload, size) for _ in range(3)]),
                    1,
                )
                out["bulk_relayed_MBps"] = round(
                    statistics.median([await bulk(m, relayed[0], payload, size) for _ in range(3)]),
                    1,
                )
            out["bulk_ratio"] = round(out["bulk_relayed_MBps"] / out["bulk_direct_MBps"], 2)
            out["payload_sha256"] = hashlib.sha256(payload.read_bytes()).hexdigest()[:12]
            await paths.aclose()
    finally:
        for proc in (agent, relay, *sshds):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mbytes", type=int, default=200)
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    result = asyncio.run(main(parser.parse_args()))
    print(json.dumps(result, indent=1))
