"""`mssp exec` / `mssp run` hand their runs to a running daemon (mssp/handoff.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from mssp import handoff
from mssp.models.runs import HostRun, Run
from tests.handoff.conftest import client, client_process


async def test_exec_runs_in_the_daemon_without_the_passphrase(daemon) -> None:
    # the client has no vault passphrase: only the daemon can have run this
    code, out, err = await client(daemon.settings, "exec", "client:bolt", "--json", "--", "echo hi")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["state"] == "finished" and summary["exit_code"] == 0
    assert sorted(h["host"] for h in summary["hosts"]) == ["bolt/hq/db1", "bolt/hq/db2"]
    assert all(h["state"] == "ok" and h["stdout"] == "hi\n" for h in summary["hosts"])
    run = await Run.get(id=summary["run_id"])
    assert run.state == "finished"


async def test_recap_and_exit_code_as_a_local_run(daemon) -> None:
    code, out, err = await client(
        daemon.settings, "exec", "client:acme", "--retries", "0", "--", "echo", "hi"
    )
    assert code == 5, err  # one host unreachable
    assert "acme/hq/dead | UNREACHABLE" in out
    assert "acme/hq/web1 | OK | rc=0" in out and "    hi" in out


async def test_jsonl_streams_the_runs_events(daemon) -> None:
    code, out, err = await client(daemon.settings, "exec", "client:bolt", "--jsonl", "--", "true")
    assert code == 0, err
    kinds = [json.loads(line)["event"] for line in out.splitlines()]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunSummary"
    assert "RunFinished" in kinds and kinds.count("HostStateChanged") >= 4


async def test_a_bad_task_or_target_is_the_same_error_as_locally(daemon) -> None:
    code, _, err = await client(daemon.settings, "run", "no.such.task", "client:bolt")
    assert code == 2 and "no.such.task" in err
    code, _, err = await client(daemon.settings, "exec", "client:nobody", "--", "true")
    assert code == 2 and "no host matches" in err
    assert await Run.all().count() == 0


async def test_declined_runs_run_locally(daemon) -> None:
    # -f above the daemon's forks: it declines, the command runs itself (and needs the vault)
    code, _, err = await client(daemon.settings, "exec", "client:bolt", "-f", "1000", "--", "true")
    assert code != 0 and "passphrase" in err.lower()
    code, out, err = await client(
        daemon.settings,
        "exec",
        "client:bolt",
        "-f",
        "1000",
        "--json",
        "--",
        "true",
        passphrase=True,
    )
    assert code == 0, err
    assert json.loads(out)["exit_code"] == 0


async def test_local_flag_runs_here(daemon) -> None:
    code, _, err = await client(daemon.settings, "exec", "client:bolt", "--local", "--", "true")
    assert code != 0 and "passphrase" in err.lower()


async def _wait_running(count: int) -> None:
    for _ in range(1000):
        if await HostRun.filter(state="running").count() >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("hosts never ran")


async def test_ctrl_c_twice_stops_the_run_at_once(daemon) -> None:
    proc = await client_process(daemon.settings, "exec", "client:bolt", "--", "sleep 30")
    await _wait_running(2)
    proc.send_signal(signal.SIGINT)
    await asyncio.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130, err
    run = await Run.all().first()
    assert run is not None and run.state == "cancelled"
    assert not await HostRun.filter(state="running").exists()


async def test_a_client_that_dies_cancels_its_run(daemon) -> None:
    proc = await client_process(daemon.settings, "exec", "client:bolt", "--", "sleep 30")
    await _wait_running(2)
    proc.kill()
    await proc.wait()
    for _ in range(500):
        run = await Run.all().first()
        if run is not None and run.state == "cancelled":
            break
        await asyncio.sleep(0.02)
    assert run is not None and run.state == "cancelled"
    states = set(await HostRun.all().values_list("state", flat=True))
    assert states == {"cancelled"}


def _run_request(fingerprint: str, **changes: object) -> dict[str, object]:
    request = {
        "v": 1,
        "op": "run",
        "db": fingerprint,
        "task": "command",
        "target": "client:bolt",
        "params": {"cmd": "true"},
        "options": {},
    }
    return request | changes


def _line(message: dict[str, object]) -> bytes:
    return json.dumps(message).encode() + b"\n"


def _raw(path, payload: bytes) -> list[dict]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(15)
        sock.connect(str(path))
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a daemon that stopped reading a too long line; its answer is still there
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                data += chunk
    return [json.loads(line) for line in data.splitlines()]


async def test_bad_requests_get_an_answer_and_change_nothing(daemon) -> None:
    fingerprint = handoff.database_fingerprint(daemon.settings)
    cases = [
        b"x" * (2 << 20) + b"\n",
        b"not json\n",
        b"[1, 2]\n",
        json.dumps({"v": 1, "op": "launch", "db": fingerprint}).encode() + b"\n",
        _line(_run_request(fingerprint, options={"forks": -3})),
        _line(_run_request(fingerprint, params="x")),
    ]
    for payload in cases:
        replies = await asyncio.to_thread(_raw, daemon.socket, payload)
        assert [r["type"] for r in replies] == ["error"], (payload, replies)
    replies = await asyncio.to_thread(_raw, daemon.socket, json.dumps({"v": 99}).encode() + b"\n")
    assert replies[0]["type"] == "declined"
    other_db = {"v": 1, "op": "run", "db": "0" * 16}
    replies = await asyncio.to_thread(_raw, daemon.socket, json.dumps(other_db).encode() + b"\n")
    assert replies[0]["type"] == "declined" and "database" in replies[0]["reason"]
    assert await Run.all().count() == 0
    # and the daemon still serves
    code, _, err = await client(daemon.settings, "exec", "client:bolt", "--", "true")
    assert code == 0, err


async def test_the_socket_is_private(daemon) -> None:
    assert daemon.socket.stat().st_mode & 0o777 == 0o600


async def test_another_user_is_refused(daemon) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root: it connects as another user (uid 65534)")
    # Open the socket to everyone so that only the peer-credential check stands in the way: a
    # second name for the same socket (a hard link) in a folder uid 65534 can traverse.
    daemon.socket.chmod(0o666)
    public = Path(tempfile.mkdtemp(prefix="mssp-handoff-"))
    public.chmod(0o711)
    link = public / "daemon.sock"
    os.link(daemon.socket, link)
    fingerprint = handoff.database_fingerprint(daemon.settings)
    request = _run_request(fingerprint, params={"cmd": "touch /tmp/pwned"})
    code = (
        "import json, socket, sys\n"
        "s = socket.socket(socket.AF_UNIX); s.settimeout(15); s.connect(sys.argv[1])\n"
        "s.sendall(sys.argv[2].encode() + b'\\n')\n"
        "print(s.recv(65536).decode())\n"
    )
    result = await asyncio.to_thread(
        subprocess.run,
        # the system interpreter: the project's venv may sit in a folder uid 65534 cannot open
        ["/usr/bin/python3", "-I", "-c", code, str(link), json.dumps(request)],
        capture_output=True,
        text=True,
        user=65534,
        group=65534,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    shutil.rmtree(public)
    reply = json.loads(result.stdout)
    assert reply["type"] == "declined" and "user" in reply["reason"]
    assert await Run.all().count() == 0


async def test_run_options_reach_the_daemon(daemon) -> None:
    code, out, err = await client(
        daemon.settings,
        "exec",
        "client:bolt",
        "--batch",
        "1",
        "--timeout",
        "30s",
        "--max-fail",
        "50",
        "--json",
        "--",
        "true",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert sorted(h["wave"] for h in summary["hosts"]) == [0, 1]
    assert summary["options"]["batch"] == "1" and summary["options"]["timeout"] == 30
    assert summary["options"]["max_fail"] == 50


async def test_a_daemon_that_stops_leaves_true_states_and_tells_the_client(daemon) -> None:
    proc = await client_process(daemon.settings, "exec", "client:bolt", "--", "sleep 30")
    await _wait_running(2)
    daemon.proc.send_signal(signal.SIGTERM)  # a service stop while the run goes on
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    run = await Run.all().first()
    assert run is not None and run.state == "cancelled"
    assert set(await HostRun.all().values_list("state", flat=True)) == {"cancelled"}
    # the client shows what the daemon recorded, with the exit code of a cancelled run
    assert proc.returncode == 6, err
    assert "bolt/hq/db1 | CANCELLED" in out.decode()


async def test_results_come_one_line_per_host(daemon) -> None:
    """A fleet's capped outputs (1 MiB per stream per host) must not make one giant line."""
    fingerprint = handoff.database_fingerprint(daemon.settings)
    request = _run_request(fingerprint, params={"cmd": "head -c 300000 /dev/zero | tr '\\0' x"})
    replies = await asyncio.to_thread(_raw, daemon.socket, _line(request))
    kinds = [r["type"] for r in replies]
    assert kinds[0] == "started" and kinds[-1] == "summary"
    hosts = [r["host"] for r in replies if r["type"] == "host"]
    assert sorted(h["host"] for h in hosts) == ["bolt/hq/db1", "bolt/hq/db2"]
    assert all(len(h["stdout"]) == 300000 for h in hosts)
    assert "hosts" not in replies[-1]["summary"]


async def test_a_second_daemon_on_the_same_home_refuses_to_start(daemon) -> None:
    code, _, err = await client(daemon.settings, "daemon", "--poll", "1", passphrase=True)
    assert code == 2 and "another mssp daemon already listens" in err
    # the first one still serves
    code, _, err = await client(daemon.settings, "exec", "client:bolt", "--", "true")
    assert code == 0, err
