"""The lab's relay: a real relay in the root namespace and a real agent inside the relay-only site.

`mssp lab relay up` (idempotent: it repairs what is missing, e.g. a relay that was killed):

- an uplink veth ``mssplabu<n>`` (198.19.n.1/30 root side, 198.19.n.2/30 as ``uplink`` in the
  site). In the site, the default "lookup main" rule is replaced by one rule, "ipproto tcp dport
  PORT to 198.19.n.1 lookup main": the agent can dial the relay's address:port and nothing else,
  and nothing in the root namespace gets an answer from the site (the hosts keep listening on the
  site's loopback only). The lab's teardown deletes every ``mssplab*`` link, so this one too.
- ``mssp-relay serve`` on 198.19.n.1:PORT (TLS, its own state in data_dir/lab/relay, this core's
  key authorised), a process of the root namespace recorded in link.json (`lab relay down` stops
  it; the lab's teardown does not know it).
- the site enrolled (`mssp site enroll`), ``mssp-agent join`` and ``mssp-agent run`` inside the
  site's namespace with an allowlist of the site's host addresses on port 22 (the lab's teardown
  kills every process in lab namespaces, so the agent too).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mssp.config import Settings
from mssp.errors import LabError
from mssp.lab import netns as lab_netns
from mssp.lab import state as lab_state
from mssp.lab.layout import VETH_PREFIX
from mssp.lab.state import ProcessRef, SiteState

PORT = 18443
UPLINK = "uplink"


@dataclass(frozen=True)
class RelayLink:
    """What `lab relay up` made (data_dir/lab/relay/link.json)."""

    site: str
    netns: str
    veth: str
    relay_address: str
    port: int
    url: str
    pin: str
    allow: list[str]
    relay: ProcessRef | None
    agent: ProcessRef | None
    relay_site_id: str = ""

    @property
    def relay_alive(self) -> bool:
        return lab_state.alive(self.relay)

    @property
    def agent_alive(self) -> bool:
        return lab_state.alive(self.agent)


def relay_dir(settings: Settings) -> Path:
    return lab_state.lab_dir(settings) / "relay"


def _link_file(settings: Settings) -> Path:
    return relay_dir(settings) / "link.json"


def load(settings: Settings) -> RelayLink | None:
    path = _link_file(settings)
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        for key in ("relay", "agent"):
            raw[key] = ProcessRef(**raw[key]) if raw.get(key) else None
        return RelayLink(**raw)
    except (ValueError, TypeError, KeyError) as exc:
        raise LabError(f"{path} is unreadable ({exc}); run `mssp lab relay down`") from None


def _save(settings: Settings, link: RelayLink) -> None:
    path = _link_file(settings)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(link), indent=1, sort_keys=True))
    os.replace(tmp, path)


def _tool(name: str) -> str:
    found = Path(sys.executable).with_name(name)
    if found.exists():
        return str(found)
    path = shutil.which(name)
    if path is None:
        raise LabError(f"{name} is not installed (pip install mssp[relay])")
    return path


def _relay_site(state: lab_state.LabState) -> SiteState:
    if state.mode != "namespaces":
        raise LabError("the lab's relay needs the namespace lab (run as root)")
    for site in state.sites:
        if site.reach == "relay" and site.netns:
            return site
    raise LabError("this lab has no relay-only site (start it without --no-relay-only-site)")


def _ref(pid: int) -> ProcessRef:
    start = lab_state.process_start_time(pid)
    if start is None:
        raise LabError(f"process {pid} ended at once")
    return ProcessRef(pid, start)


# ---- network ---------------------------------------------------------------------------
async def _uplink(site: SiteState, address: str, port: int) -> str:
    veth = f"{VETH_PREFIX}u{site.number}"
    if veth in lab_netns.existing_links(VETH_PREFIX):
        return veth
    n = site.number
    await lab_netns.ip_batch(
        [
            f"link add {veth} type veth peer name {UPLINK} netns {site.netns}",
            f"link set dev {veth} addrgenmode none",
            f"addr add {address}/30 dev {veth}",
            f"link set dev {veth} up",
        ]
    )
    await lab_netns.ip_batch(
        [
            f"link set dev {UPLINK} addrgenmode none",
            f"addr add 198.19.{n}.2/30 dev {UPLINK}",
            f"link set dev {UPLINK} up",
        ],
        netns=site.netns,
    )
    # The only way out of the site: TCP to the relay's address and port. Rules are checked
    # first, so an uplink made again after `down` (or a half-made one) converges.
    rules = await _rules(site.netns)
    commands = []
    if "32766:" in rules:
        commands.append("rule del pref 32766")
    if "900:" not in rules:
        commands.append(f"rule add pref 900 ipproto tcp dport {port} to {address}/32 lookup main")
    if commands:
        await lab_netns.ip_batch(commands, netns=site.netns)
    return veth


async def _rules(netns: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "ip",
        "-n",
        netns,
        "rule",
        "show",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await proc.communicate()
    return "\n".join(line.split()[0] for line in out.decode().splitlines() if line.strip())


async def _restore_rules(netns: str) -> None:
    """Back to the site's rules before the uplink: no way out at all, main table for replies."""
    rules = await _rules(netns)
    commands = []
    if "900:" in rules:
        commands.append("rule del pref 900")
    if "32766:" not in rules:
        commands.append("rule add pref 32766 lookup main")
    if commands:
        await lab_netns.ip_batch(commands, netns=netns, force=True)


# ---- processes -------------------------------------------------------------------------
def _spawn(argv: list[str], log: Path, env: Mapping[str, str] | None = None) -> ProcessRef:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env) if env is not None else None,
        )
    return _ref(proc.pid)


async def _wait_port(address: str, port: int, ref: ProcessRef, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not lab_state.alive(ref):
            raise LabError("the lab relay exited at start (see data_dir/lab/relay/relay.log)")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 1)
            writer.close()
            return
        except (OSError, TimeoutError):
            await asyncio.sleep(0.1)
    raise LabError(f"the lab relay does not listen on {address}:{port}")


def _stop(ref: ProcessRef | None, grace: float = 5.0) -> None:
    if not lab_state.alive(ref):
        return
    assert ref is not None
    os.kill(ref.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while lab_state.alive(ref) and time.monotonic() < deadline:
        time.sleep(0.05)
    if lab_state.alive(ref):
        os.kill(ref.pid, signal.SIGKILL)


def _ensure_relay(settings: Settings, address: str, port: int) -> tuple[str, list[str]]:
    """The relay's certificate (made once) and registry; returns (pin, argv to serve)."""
    from relay import tls

    directory = relay_dir(settings)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert = directory / "relay.crt"
    if cert.exists():
        pin = tls.pin_of_pem_file(cert)
    else:
        pin = tls.generate(cert, directory / "relay.key", [address]).pin
    argv = [_tool("mssp-relay"), "--dir", str(directory), "serve", "--host", address]
    return pin, [*argv, "--port", str(port), "--heartbeat", "10"]


async def up(settings: Settings, env: Mapping[str, str]) -> RelayLink:
    """Make (or repair) the lab's relay, uplink and agent; returns the link once it is online."""
    from mssp import db
    from mssp.connectors import relay_ops, relay_store
    from mssp.connectors.relay import RelayPaths
    from mssp.lab.inventory import open_vault
    from relay.registry import Registry

    state = lab_state.load(settings)
    if state is None:
        raise LabError("no lab is running: `mssp lab up` first")
    site = _relay_site(state)
    address, port = f"198.19.{site.number}.1", PORT
    url = f"wss://{address}:{port}"
    allow = sorted(
        {f"{h.address}/32" for h in state.hosts if (h.client, h.site) == (site.client, site.slug)}
    )
    full = f"{site.client}/{site.slug}"
    old = load(settings)
    vault, _, _ = open_vault(settings, env)  # first: a locked vault leaves nothing half-made
    veth = await _uplink(site, address, port)
    pin, serve = _ensure_relay(settings, address, port)
    directory = relay_dir(settings)
    relay_ref = old.relay if old is not None and old.relay_alive else None
    async with db.database(settings):
        public = await relay_store.ensure_core_key(vault)
        if relay_ref is None:
            registry = Registry(directory / "registry.json")
            registry.lock()
            try:
                registry.add_core(public)
            finally:
                registry.unlock()
            relay_ref = _spawn(serve, directory / "relay.log")
        await _wait_port(address, port, relay_ref)
        await relay_store.set_endpoint(vault, url, pin)
        record = await relay_store.agent_for(site.client, site.slug)
        agent_dir = directory / "agent"
        agent_ref = old.agent if old is not None and old.agent_alive else None
        usable = (
            record is not None
            and record.revoked_at is None
            and (agent_dir / "agent.json").exists()
            and json.loads((agent_dir / "agent.json").read_text()).get("site_id")
            == record.relay_site_id
        )
        paths = RelayPaths(settings.replace(relay_url=""), vault)
        try:
            if not usable:
                _stop(agent_ref)
                agent_ref = None
                enrolment = await relay_ops.enroll(paths, full, ttl=300)
                join = [
                    "ip", "netns", "exec", site.netns, _tool("mssp-agent"),
                    "--state-dir", str(agent_dir), "join", "-", "--force", "--json",
                    *(f"--network={n}" for n in allow), "--port", "22",
                ]  # fmt: skip
                proc = await asyncio.create_subprocess_exec(
                    *join,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                _, err = await asyncio.wait_for(proc.communicate(enrolment.token.encode()), 60)
                if proc.returncode != 0:
                    reason = err.decode(errors="replace").strip()[-500:]
                    raise LabError(f"mssp-agent join failed: {reason}")
            if agent_ref is None:
                run = ["ip", "netns", "exec", site.netns, _tool("mssp-agent"),
                       "--state-dir", str(agent_dir), "run", "--drain-timeout", "2"]  # fmt: skip
                agent_ref = _spawn(run, directory / "agent.log")
            record = await relay_store.agent_for(site.client, site.slug)
            assert record is not None
            await _wait_online(paths, record.relay_site_id, agent_ref)
        finally:
            await paths.aclose()
    link = RelayLink(
        full, site.netns, veth, address, port, url, pin, allow, relay_ref, agent_ref,
        record.relay_site_id,
    )  # fmt: skip
    _save(settings, link)
    return link


async def _wait_online(
    paths: Any, relay_site_id: str, agent: ProcessRef, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not lab_state.alive(agent):
            raise LabError("the lab agent exited (see data_dir/lab/relay/agent.log)")
        for item in await paths.presence():
            if item.site_id == relay_site_id and item.online:
                return
        await asyncio.sleep(0.2)
    raise LabError("the lab agent did not come online (see data_dir/lab/relay/agent.log)")


async def down(settings: Settings) -> dict[str, Any]:
    """Stop the agent and the relay, remove the uplink. Idempotent."""
    link = load(settings)
    if link is None:
        return {"stopped": False}
    _stop(link.agent)
    _stop(link.relay)
    if link.veth in lab_netns.existing_links(VETH_PREFIX):
        await lab_netns.ip_batch([f"link del {link.veth}"], force=True)
    if lab_netns.netns_inode(link.netns) is not None:  # the site still exists
        await _restore_rules(link.netns)
    _link_file(settings).unlink(missing_ok=True)
    return {"stopped": True, "site": link.site}


def kill_relay(settings: Settings) -> None:
    """SIGKILL the lab relay (fault tests); `lab relay up` starts it again."""
    link = load(settings)
    if link is None or not link.relay_alive:
        raise LabError("the lab relay is not running")
    assert link.relay is not None
    os.kill(link.relay.pid, signal.SIGKILL)


def status(settings: Settings) -> dict[str, Any]:
    link = load(settings)
    if link is None:
        return {"running": False}
    return {
        "running": link.relay_alive and link.agent_alive,
        "site": link.site,
        "url": link.url,
        "pin": link.pin,
        "relay_alive": link.relay_alive,
        "agent_alive": link.agent_alive,
        "relay_pid": link.relay.pid if link.relay else None,
        "agent_pid": link.agent.pid if link.agent else None,
        "uplink": link.veth,
        "allowlist": link.allow,
        "relay_site_id": link.relay_site_id,
    }
