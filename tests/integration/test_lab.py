"""The lab's promises, on the real lab: hosts answer over SSH with their pinned keys, changes stay
inside a host, apt sees the lab repository's updates, the relay-only site is unreachable, the
inventory is written, and `lab down` leaves nothing behind. Needs root; fails, never skips."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import re
import socket
import subprocess
from pathlib import Path

import asyncssh
import pytest

from mssp import db as mssp_db
from mssp.errors import RelayUnavailable, UsageError
from mssp.lab.host import current_init
from mssp.lab.layout import NETNS_PREFIX, VETH_PREFIX, LabSpec, plan
from mssp.lab.state import process_start_time
from mssp.store import inventory as store_inv
from mssp.store.credentials import VaultCredentialResolver
from mssp.store.hostkeys import DbHostKeyStore
from mssp.vault import unlock_from_settings

from .conftest import LAB_HOSTS_PER_SITE, LAB_SITES, LabHandle, MachineSnapshot, run_mssp

pytestmark = pytest.mark.lab


def _digest(*paths: str) -> dict[str, str]:
    return {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def test_status_shows_every_host_up(lab: LabHandle) -> None:
    result = run_mssp(lab.env, "lab", "status", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["running"] and data["mode"] == "namespaces"
    assert len(data["hosts"]) == LAB_SITES * LAB_HOSTS_PER_SITE + 1  # + simulated Windows
    assert {h["state"] for h in data["hosts"]} == {"up"}
    assert any("SIMULATED Windows host" in note for note in data["notes"])
    assert sorted(s["reach"] for s in data["sites"]) == ["direct", "relay"]
    table = run_mssp(lab.env, "lab", "status")
    assert table.returncode == 0
    for host in data["hosts"]:
        assert host["host"] in table.stdout


async def test_every_direct_host_answers_with_its_pinned_key(lab: LabHandle) -> None:
    async def hostname(h):
        async with lab.connect(h) as conn:
            return (await conn.run("hostname", check=True, timeout=20)).stdout.strip()

    hosts = lab.hosts(reach="direct")
    assert len(hosts) == LAB_HOSTS_PER_SITE
    names = await asyncio.gather(*(hostname(h) for h in hosts))
    assert names == [h.hostname for h in hosts]


def test_relay_only_hosts_answer_inside_their_site(lab: LabHandle) -> None:
    for h in lab.hosts(reach="relay"):
        result = lab.ssh_in_site(h, "hostname")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == h.hostname


async def test_relay_only_site_is_unreachable_from_the_root_namespace(lab: LabHandle) -> None:
    relay_hosts = lab.hosts(reach="relay")
    assert relay_hosts
    for h in relay_hosts:
        # whatever answers at that address here is not the host: its pinned key never verifies
        with pytest.raises((OSError, asyncssh.Error, TimeoutError)):
            async with lab.connect(h):
                pass
    # and the site has no link at all besides its loopback
    links = lab.in_site(relay_hosts[0], ["ip", "-o", "link", "show"])
    assert [line.split(":")[1].strip() for line in links.stdout.splitlines()] == ["lo"]


async def test_hosts_cannot_open_connections_to_the_machine(lab: LabHandle) -> None:
    h = lab.hosts(reach="direct")[0]
    gateway = next(s.root_address for s in lab.state().sites if s.root_address)
    server = socket.create_server((gateway, 0))
    port = server.getsockname()[1]
    try:
        async with lab.connect(h) as conn:
            result = await conn.run(
                f"timeout 5 bash -c 'echo > /dev/tcp/{gateway}/{port}'", timeout=20
            )
    finally:
        server.close()
    assert result.exit_status != 0
    assert "unreachable" in result.stderr.lower()


async def test_useradd_in_a_host_leaves_the_machine_and_other_hosts_untouched(
    lab: LabHandle,
) -> None:
    files = ("/etc/passwd", "/etc/shadow", "/etc/group")
    before = _digest(*files)
    first, second = lab.hosts(reach="direct")[:2]
    async with lab.connect(first) as conn:
        result = await conn.run(
            "useradd -m labprobe && id -u labprobe && echo secret > /root/probe "
            "&& touch /etc/lab-probe && cat /root/probe",
            timeout=30,
        )
        assert result.exit_status == 0, result.stderr
    assert _digest(*files) == before
    assert not Path("/etc/lab-probe").exists()
    assert "labprobe" not in Path("/etc/passwd").read_text()
    async with lab.connect(second) as conn:
        other = await conn.run("id labprobe; ls /etc/lab-probe", timeout=20)
    assert other.exit_status != 0


async def test_hosts_see_no_machine_secrets(lab: LabHandle) -> None:
    h = lab.hosts(reach="direct")[0]
    async with lab.connect(h) as conn:
        result = await conn.run(
            f"ls -A /work {lab.home} /root; ls /etc/ssh/ssh_host_*; echo HOME=$HOME",
            timeout=20,
        )
    listing = result.stdout
    assert "vault.json" not in listing and "client_key" not in listing and "main" not in listing
    assert "ssh_host_rsa_key" not in listing  # the machine's own host keys are gone
    assert "ssh_host_ed25519_key" in listing  # the host's own
    async with lab.connect(h) as conn:
        shadow = (await conn.run("cat /etc/shadow", check=True, timeout=20)).stdout
    machine = dict(line.split(":")[:2] for line in Path("/etc/shadow").read_text().splitlines())
    inside = dict(line.split(":")[:2] for line in shadow.splitlines())
    assert inside["admin"].startswith("$")  # the lab's own admin password
    assert {inside[user] for user in machine} == {"*"}  # every machine account: no hash


async def test_apt_sees_upgradable_packages_from_the_lab_repository_only(lab: LabHandle) -> None:
    machine_status = _digest("/var/lib/dpkg/status")
    h = lab.hosts(reach="direct")[1]
    async with lab.connect(h) as conn:
        update = await conn.run("apt-get update", timeout=60)
        assert update.exit_status == 0, update.stderr
        assert "http" not in update.stdout and "mssp-lab-repo" in update.stdout
        upgradable = await conn.run("apt list --upgradable 2>/dev/null", timeout=60)
        for tool in ("a", "b", "c"):
            assert f"mssp-lab-tool-{tool}/lab 1.1 all [upgradable from: 1.0]" in upgradable.stdout
        upgrade = await conn.run(
            "DEBIAN_FRONTEND=noninteractive apt-get install -y --only-upgrade mssp-lab-tool-a"
            " && mssp-lab-tool-a",
            timeout=60,
        )
        assert upgrade.exit_status == 0, upgrade.stderr
        assert upgrade.stdout.strip().endswith("mssp-lab-tool-a 1.1")
        # the index agrees with what dpkg recorded: one 1.1, installed, never "1.1 -> 1.1"
        after = await conn.run("apt list --upgradable 2>/dev/null", timeout=60)
        assert "mssp-lab-tool-a" not in after.stdout and "mssp-lab-tool-b" in after.stdout
        policy = await conn.run("apt-cache policy mssp-lab-tool-a", check=True, timeout=60)
        table = policy.stdout.split("Version table:")[1]
        versions = re.findall(r"^ (\*\*\*|   ) (\S+) \d+$", table, re.M)
        assert versions == [("***", "1.1"), ("   ", "1.0")], policy.stdout
    assert _digest("/var/lib/dpkg/status") == machine_status


async def test_admin_sudo_needs_the_password(lab: LabHandle) -> None:
    h = lab.hosts(reach="direct")[2]
    async with lab.connect(h, username="admin") as conn:
        without = await conn.run("sudo -n id -u", timeout=20)
        assert without.exit_status != 0
        wrong = await conn.run("sudo -S -p '' id -u", input="not-the-password\n", timeout=30)
        assert wrong.exit_status != 0
        right = await conn.run("sudo -S -p '' id -u", input=lab.admin_password + "\n", timeout=30)
        assert right.exit_status == 0, right.stderr
        assert right.stdout.strip() == "0"


async def test_restic_backs_up_and_restores_in_a_host(lab: LabHandle) -> None:
    h = lab.hosts(reach="direct")[3]
    script = (
        "set -e; export RESTIC_REPOSITORY=/srv/backup RESTIC_PASSWORD_FILE=/root/.restic-pw; "
        "head -c 16 /dev/urandom | base64 > /root/.restic-pw; restic init -q; "
        "restic backup -q /etc/hostname; restic restore -q latest --target /tmp/r; "
        "cmp /etc/hostname /tmp/r/etc/hostname && echo restored"
    )
    async with lab.connect(h) as conn:
        result = await conn.run(script, timeout=60)
    assert result.exit_status == 0, result.stderr
    assert result.stdout.strip().endswith("restored")
    assert not Path("/srv/backup").exists()


async def test_inventory_holds_the_lab_with_pinned_keys_and_vault_credentials(
    lab: LabHandle,
) -> None:
    state = lab.state()
    vault = unlock_from_settings(lab.settings.replace(vault_key_file=lab.home / "lab-vault.key"))
    async with mssp_db.database(lab.settings):
        records = {r.full_name: r for r in await store_inv.load_hosts()}
        assert set(records) == {h.full_name for h in state.hosts}
        pins = DbHostKeyStore()
        resolver = VaultCredentialResolver(vault)
        for h in lab.hosts():
            record = records[h.full_name]
            site = next(s for s in state.sites if (s.client, s.slug) == (h.client, h.site))
            assert record.via == site.reach
            assert record.address == h.address and record.username == "root"
            assert await pins.pinned(record) == [" ".join(h.host_key.split()[:2])]
        creds = await resolver.resolve(records[lab.hosts(reach="direct")[0].full_name])
    assert creds.private_key is not None
    assert asyncssh.import_private_key(creds.private_key).export_public_key(
        "openssh"
    ).decode().strip() == (state.client_public_key)


def test_a_second_lab_up_is_refused_and_changes_nothing(lab: LabHandle) -> None:
    before = lab.state()
    result = run_mssp(lab.env, "lab", "up", "--sites", "1", "--no-relay-only-site")
    assert result.returncode == 1
    assert "already running" in result.stderr
    assert lab.state() == before


def test_bad_sizes_are_usage_errors(lab: LabHandle) -> None:
    bad = (LabSpec(sites=0), LabSpec(hosts_per_site=500), LabSpec(sites=1), LabSpec(sites=300))
    for spec in bad:
        with pytest.raises(UsageError):
            plan(spec)
    result = run_mssp(lab.env, "lab", "up", "--sites", "1")
    assert result.returncode == 2 and "relay-only site needs --sites 2" in result.stderr


def test_plan_addresses_stay_in_the_lab_ranges() -> None:
    sites = plan(LabSpec(sites=5, hosts_per_site=12))
    assert [s.reach for s in sites] == ["direct"] * 4 + ["relay"]
    assert len({s.netns for s in sites}) == 5
    for site in sites:
        names = [h.name for h in site.hosts]
        assert len(set(names)) == len(names) == 12
        for h in site.hosts:
            net = ipaddress.ip_address(h.address)
            if site.reach == "relay":
                assert net in ipaddress.ip_network("127.0.1.0/24") and site.veth_root is None
            else:
                assert net in ipaddress.ip_network("198.18.0.0/15")
                assert h.address.startswith(f"198.18.{site.number}.")


def test_without_root_the_lab_says_so_and_offers_the_reduced_mode(monkeypatch) -> None:
    from mssp.errors import LabError
    from mssp.lab import runtime

    monkeypatch.setattr(runtime.os, "geteuid", lambda: 1000)
    with pytest.raises(LabError) as caught:
        runtime.check_prerequisites()
    assert "needs root" in str(caught.value) and "--reduced" in str(caught.value)


async def test_reduced_mode_serves_sshd_processes_on_loopback(lab: LabHandle, tmp_path) -> None:
    """Beside the namespace lab (it never touches namespaces): start, log in, stop."""
    env = {**lab.env, "MSSP_HOME": str(tmp_path)}
    env.pop("MSSP_VAULT_KEY_FILE", None)
    up = run_mssp(env, "lab", "up", "--reduced", "--sites", "2", "--hosts-per-site", "2",
                  "--no-register", "--json")  # fmt: skip
    assert up.returncode == 0, up.stderr
    data = json.loads(up.stdout)
    assert data["mode"] == "reduced" and len(data["hosts"]) == 4
    key = asyncssh.import_private_key((tmp_path / "lab" / "client_key").read_text())
    for host in data["hosts"]:
        assert host["address"].startswith("127.77.") and host["port"] == 2222
        async with asyncssh.connect(
            host["address"], host["port"], username="root", client_keys=[key],
            known_hosts=([asyncssh.import_public_key(host["host_key"])], [], []),
            agent_path=None, connect_timeout=10,
        ) as conn:  # fmt: skip
            assert (await conn.run("echo ok", check=True, timeout=20)).stdout == "ok\n"
    down = run_mssp(env, "lab", "down", "--json")
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout)["hosts_stopped"] == 4
    for host in data["hosts"]:
        with pytest.raises(OSError):
            socket.create_connection((host["address"], 2222), timeout=2).close()
    assert lab.state().hosts  # the namespace lab is untouched


async def test_mssp_reaches_lab_hosts_through_its_own_inventory(
    lab: LabHandle, lab_settings
) -> None:
    """The connection manager with the vault's credentials and the pinned keys, as mssp runs."""
    from mssp.connections import ConnectionManager

    settings = lab_settings
    vault = unlock_from_settings(settings)
    async with mssp_db.database(settings):
        records = {r.full_name: r for r in await store_inv.load_hosts()}
        manager = ConnectionManager(
            settings, credentials=VaultCredentialResolver(vault), host_keys=DbHostKeyStore()
        )
        try:
            linux = records[lab.hosts(reach="direct")[0].full_name]
            async with manager.connection(linux) as conn:
                result = await conn.run("hostname", timeout=20)
            assert result.stdout.strip() == lab.hosts(reach="direct")[0].hostname
            windows = records[lab.windows_host().full_name]
            assert windows.transport == "winrm" and "simulated" in windows.tags
            async with manager.connection(windows) as conn:
                result = await conn.run_cmd("hostname", timeout=20)
            assert result.exit_status == 0 and result.stdout.strip() == "WIN-LAB01"
            relayed = records[lab.hosts(reach="relay")[0].full_name]
            assert relayed.via == "relay"
            with pytest.raises(RelayUnavailable):  # no relay yet: never a direct attempt
                async with manager.connection(relayed):
                    pass
        finally:
            await manager.aclose()


def test_another_home_neither_starts_a_second_lab_nor_stops_this_one(
    lab: LabHandle, tmp_path
) -> None:
    env = {**lab.env, "MSSP_HOME": str(tmp_path)}
    env.pop("MSSP_VAULT_KEY_FILE", None)
    before = lab.state()
    up = run_mssp(env, "lab", "up", "--no-register")
    assert up.returncode == 1
    assert "Another lab is running" in up.stderr and str(lab.home / "lab") in up.stderr
    assert "mssp lab down --force" in up.stderr
    down = run_mssp(env, "lab", "down", "--json")
    assert down.returncode == 0, down.stderr
    assert any("left alone" in note for note in json.loads(down.stdout)["notes"])
    assert lab.state() == before
    status = json.loads(run_mssp(lab.env, "lab", "status", "--json").stdout)
    assert {h["state"] for h in status["hosts"]} == {"up"}


async def test_a_host_reboots_keeping_its_disk_address_and_host_key(lab: LabHandle) -> None:
    """`reboot_command` (what the reboot task runs) restarts the host's PID namespace."""
    h = lab.hosts(reach="direct")[0]
    command = h.options["reboot_command"]
    assert command == "/usr/sbin/mssp-lab-reboot"
    async with lab.connect(h, username="admin") as conn:
        refused = await conn.run(command, timeout=20)
    assert refused.exit_status == 1 and "must be run as root" in refused.stderr
    async with lab.connect(h) as conn:
        before = (await conn.run("cut -d' ' -f22 /proc/1/stat", check=True, timeout=20)).stdout
        await conn.run(
            "echo kept > /root/reboot-probe && useradd rebootprobe && touch /tmp/reboot-probe",
            check=True, timeout=20,
        )  # fmt: skip
        await conn.run(
            f"nohup sh -c 'sleep 0.5; {command}' >/dev/null 2>&1 </dev/null &",
            check=True, timeout=20,
        )  # fmt: skip
        await asyncio.wait_for(conn.wait_closed(), 20)  # the PID namespace ended
    for _ in range(200):
        status = json.loads(run_mssp(lab.env, "lab", "status", "--json").stdout)
        if {x["state"] for x in status["hosts"]} == {"up"}:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"the host did not come back: {status['hosts']}")
    async with lab.connect(h) as conn:  # same address, same pinned host key
        result = await conn.run(
            "cut -d' ' -f22 /proc/1/stat; cat /root/reboot-probe; id -u rebootprobe >/dev/null "
            "&& echo user-kept; ls /tmp/reboot-probe 2>/dev/null || echo tmp-cleared; hostname",
            timeout=20,
        )
    started, *rest = result.stdout.split()
    assert started != before.strip()
    assert rest == ["kept", "user-kept", "tmp-cleared", h.hostname]


def test_lab_down_leaves_nothing_behind(lab: LabHandle) -> None:
    """Last in this module: takes the session's lab down, checks, and starts it again."""
    state = lab.state()
    pids = {p.pid for h in state.hosts for p in (h.launcher, h.init) if p}
    pids |= {  # the running boots' PID 1 (a host rebooted above has a new one)
        p.pid for h in state.hosts if (p := current_init(lab.home / "lab" / "hosts" / h.key))
    }
    result = lab.down()
    try:
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["hosts_stopped"] == len(state.hosts)
        after = MachineSnapshot.take()
        assert not [n for n in after.netns if n.startswith(NETNS_PREFIX)]
        assert after.netns <= lab.baseline.netns
        assert after.links == lab.baseline.links
        assert after.mounts == lab.baseline.mounts
        # gone, or a zombie the machine's init has not collected yet
        assert not [p for p in pids & after.pids if process_start_time(p) is not None]
        for pid in after.pids - lab.baseline.pids:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            assert b"mssp-lab" not in cmdline and str(lab.home).encode() not in cmdline
        status = json.loads(run_mssp(lab.env, "lab", "status", "--json").stdout)
        assert status["running"] is False
        hosts = run_mssp(lab.env, "hosts", "client:lab-*", "--json")
        assert hosts.returncode == 0 and not json.loads(hosts.stdout)
    finally:
        # debris of a lab that lost its record (no owner): the next `lab up` removes it
        subprocess.run(["ip", "netns", "add", f"{NETNS_PREFIX}s9"], check=True)
        subprocess.run(
            ["ip", "link", "add", f"{VETH_PREFIX}9", "type", "veth", "peer", "name", "eth0",
             "netns", f"{NETNS_PREFIX}s9"],
            check=True,
        )  # fmt: skip
        lab.up()  # later modules share the session's lab
    assert f"{NETNS_PREFIX}s9" not in MachineSnapshot.take().netns
    assert f"{VETH_PREFIX}9" not in MachineSnapshot.take().links
