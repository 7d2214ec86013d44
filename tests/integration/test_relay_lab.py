"""Issue 4 in the lab, through the real CLI: the relay-only site (lab-globex/branch) has no path
from the core; its hosts are reached through a real relay (root namespace) and a real agent inside
the site's namespace. Commands, transfers, a refused target, a relay killed mid-run, presence in
`mssp site list --json`, and revocation of the live agent. The tests run in file order."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from mssp.lab.state import ProcessRef, alive
from tests.integration.conftest import MSSP, LabHandle, run_mssp

SITE = "lab-globex/branch"


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def link(lab: LabHandle) -> dict:
    return json.loads(ok(run_mssp(lab.env, "lab", "relay", "status", "--json")).stdout)


def run_json(lab: LabHandle, *args: str) -> tuple[int, dict]:
    """Run mssp with --json (placed before a ``--``); (exit code, the JSON document)."""
    cut = args.index("--") if "--" in args else len(args)
    result = run_mssp(lab.env, *args[:cut], "--json", *args[cut:])
    return result.returncode, json.loads(result.stdout)


@pytest.fixture(scope="module")
def relayed(lab: LabHandle):
    ok(run_mssp(lab.env, "lab", "relay", "up", "--json", timeout=180))
    try:
        yield lab
    finally:
        ok(run_mssp(lab.env, "lab", "relay", "down", "--json"))
        status = json.loads(run_mssp(lab.env, "lab", "relay", "status", "--json").stdout)
        assert status == {"running": False}


def relay_hosts(lab: LabHandle) -> list:
    hosts = lab.hosts(reach="relay")
    assert hosts, "the lab has no relay-only site"
    return hosts


def test_commands_on_relayed_hosts_work_through_relay_and_agent(relayed: LabHandle) -> None:
    code, run = run_json(relayed, "exec", "site:branch", "--", "hostname")
    assert code == 0, run
    got = {h["host"]: (h["state"], h["stdout"].strip()) for h in run["hosts"]}
    want = {h.full_name: ("ok", h.hostname) for h in relay_hosts(relayed)}
    assert got == want


def test_direct_connection_to_the_site_fails(relayed: LabHandle) -> None:
    host = relay_hosts(relayed)[0]
    # the site's hosts listen on the site's own loopback: from the core, nothing answers there
    with pytest.raises(OSError):
        socket.create_connection((host.address, 22), timeout=3).close()
    # nor through the uplink: the site only sends TCP to the relay's port
    status = link(relayed)
    uplink_site_side = status["url"].split("//")[1].split(":")[0].rsplit(".", 1)[0] + ".2"
    with pytest.raises(OSError):
        socket.create_connection((uplink_site_side, 22), timeout=3).close()
    # and the same host marked "direct" in the inventory is unreachable
    ok(run_mssp(relayed.env, "host", "add", f"{SITE}/direct-try", "--address", host.address,
                "--via", "direct", "--credential", "lab-key"))  # fmt: skip
    try:
        code, run = run_json(relayed, "exec", f"{SITE}/direct-try", "--retries", "0", "--",
                             "hostname")  # fmt: skip
        assert code == 5, run
        (outcome,) = run["hosts"]
        assert outcome["state"] == "unreachable" and outcome["stdout"] == ""
    finally:
        ok(run_mssp(relayed.env, "host", "remove", "--yes", f"{SITE}/direct-try"))


def test_agent_only_reaches_the_relay(relayed: LabHandle) -> None:
    host = relay_hosts(relayed)[0]
    relay_addr = link(relayed)["url"].split("//")[1].split(":")[0]
    script = (
        "import socket,sys\n"
        "for target in sys.argv[1:]:\n"
        "    a, p = target.rsplit(':', 1)\n"
        "    try:\n"
        "        socket.create_connection((a, int(p)), timeout=3).close(); print(target, 'open')\n"
        "    except OSError as e:\n"
        "        print(target, 'closed', e.errno)\n"
    )
    targets = [f"{relay_addr}:18443", f"{relay_addr}:22", f"{relay_addr}:5432", "198.18.1.1:22"]
    out = relayed.in_site(host, ["python3", "-c", script, *targets])
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert lines[f"{relay_addr}:18443"] == "open", out
    assert all(v.startswith("closed") for k, v in lines.items() if not k.endswith(":18443")), out


def test_file_transfers_through_the_relay(relayed: LabHandle, tmp_path: Path) -> None:
    host = relay_hosts(relayed)[1]
    data = os.urandom(3_000_000)
    local = tmp_path / "payload.bin"
    local.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    up = json.loads(ok(run_mssp(relayed.env, "cp", "--json", str(local),
                                f"{host.full_name}:/root/payload.bin")).stdout)  # fmt: skip
    assert up["sha256"] == digest and up["size"] == len(data)
    back = tmp_path / "back.bin"
    remote = f"{host.full_name}:/root/payload.bin"
    down = json.loads(ok(run_mssp(relayed.env, "cp", "--json", remote, str(back))).stdout)
    assert down["sha256"] == digest and back.read_bytes() == data
    code, run = run_json(relayed, "exec", host.full_name, "--", "sha256sum /root/payload.bin")
    assert code == 0 and run["hosts"][0]["stdout"].split()[0] == digest


def test_target_outside_the_allowlist_is_refused_and_the_core_says_why(
    relayed: LabHandle,
) -> None:
    ok(run_mssp(relayed.env, "host", "add", f"{SITE}/outside", "--address", "127.0.1.200",
                "--credential", "lab-key"))  # fmt: skip
    try:
        code, run = run_json(relayed, "exec", f"{SITE}/outside", "--", "hostname")
        assert code == 5, run
        (outcome,) = run["hosts"]
        assert outcome["state"] == "unreachable"
        assert "Target refused by agent" in outcome["error"]
        assert "agent: 127.0.1.200 is outside this agent's allowed networks" in outcome["error"]
    finally:
        ok(run_mssp(relayed.env, "host", "remove", "--yes", f"{SITE}/outside"))


def test_presence_in_site_list(relayed: LabHandle) -> None:
    deadline = time.monotonic() + 30  # RTT arrives with the relay's first heartbeat (10 s)
    while True:
        sites = {s["site"]: s for s in run_json(relayed, "site", "list")[1]}
        agent = sites[SITE]["agent"]
        if agent["rtt_ms"] is not None or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert agent["status"] == "online" and agent["online"] is True
    assert agent["presence_source"] == "relay"
    assert agent["since"] and agent["last_seen"] and agent["joined_at"]
    assert agent["rtt_ms"] is not None and 0 <= agent["rtt_ms"] < 1000
    assert agent["agent_key"].startswith("ssh-ed25519 ")
    direct = [s for s in sites.values() if s["reach"] == "direct"]
    assert direct and all(s["agent"] is None for s in direct)


def test_relay_killed_mid_run_fails_only_relayed_hosts_as_unreachable(
    relayed: LabHandle,
) -> None:
    proc = subprocess.Popen(
        [MSSP, "exec", "tag:linux", "--json", "--", "sleep 6; echo done"],
        env=relayed.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(3)
    ok(run_mssp(relayed.env, "lab", "relay", "kill"))
    out, err = proc.communicate(timeout=60)
    run = json.loads(out)
    assert proc.returncode == 5, (err, run["hosts"])
    relayed_names = {h.full_name for h in relay_hosts(relayed)}
    assert {h["host"] for h in run["hosts"]} > relayed_names  # direct hosts in the same run
    for outcome in run["hosts"]:
        if outcome["host"] in relayed_names:
            assert outcome["state"] == "unreachable", outcome
            assert "through the relay was lost" in outcome["error"], outcome
            assert outcome["duration"] < 5.5, outcome  # cut at the kill, not at the end
        else:
            assert (outcome["state"], outcome["stdout"].strip()) == ("ok", "done"), outcome
    # the relay comes back; the agent reconnects by itself (it was never restarted)
    agent_before = link(relayed)["agent_pid"]
    ok(run_mssp(relayed.env, "lab", "relay", "up", "--json", timeout=120))
    assert link(relayed)["agent_pid"] == agent_before
    code, run = run_json(relayed, "exec", "site:branch", "--", "hostname")
    assert code == 0, run


def test_revoke_cuts_the_live_agent_within_seconds(relayed: LabHandle) -> None:
    status = link(relayed)
    agent = status["agent_pid"]
    start_time = int(Path(f"/proc/{agent}/stat").read_text().rsplit(")", 1)[1].split()[19])
    started = time.monotonic()
    ok(run_mssp(relayed.env, "site", "revoke", SITE, "--yes"))
    while alive(ProcessRef(agent, start_time)) and time.monotonic() - started < 15:
        time.sleep(0.1)
    assert not alive(ProcessRef(agent, start_time)), "the agent still runs after revocation"
    assert time.monotonic() - started < 10
    log = (relayed.settings.data_dir / "lab" / "relay" / "agent.log").read_text()
    assert "-> revoked" in log
    sites = {s["site"]: s for s in run_json(relayed, "site", "list")[1]}
    assert sites[SITE]["agent"]["status"] == "revoked" and not sites[SITE]["agent"]["online"]
    code, run = run_json(relayed, "exec", "site:branch", "--", "hostname")
    assert code == 5
    assert all("revoked" in h["error"] for h in run["hosts"])
    # `lab relay up` enrols a fresh agent: the site works again
    ok(run_mssp(relayed.env, "lab", "relay", "up", "--json", timeout=120))
    code, run = run_json(relayed, "exec", "site:branch", "--", "true")
    assert code == 0, run
