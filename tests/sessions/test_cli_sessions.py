"""The session commands as a user runs them: help everywhere, listings in JSON, cp and collect
exit codes, `mssp rdp` with a stand-in RDP client, replay, and the dashboard's blocking launcher."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import click
import pytest

from mssp.cli import cli
from mssp.config import load_settings
from tests.sessions.conftest import HOST, Home
from tests.sessions.ptyproc import PtyProcess

COMMANDS = [
    ("ssh",),
    ("ps",),
    ("cp",),
    ("collect",),
    ("forward",),
    ("rdp",),
    ("recordings",),
    ("recordings", "list"),
    ("recordings", "play"),
]


@pytest.mark.parametrize("path", COMMANDS)
def test_every_session_command_has_help(home: Home, path: tuple[str, ...]) -> None:
    result = home.invoke(*path, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_listings_and_results_have_json() -> None:
    for path in (("recordings", "list"), ("cp",), ("collect",), ("forward",)):
        command: click.Command = cli
        for name in path:
            command = command.get_command(click.Context(command), name)  # type: ignore[attr-defined]
        assert any("--json" in p.opts for p in command.params), path


def _run(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*home.mssp, *args],
        env=home.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cp_and_collect_commands(home: Home, tmp_path: Path) -> None:
    src = tmp_path / "notes.txt"
    src.write_text("copied by mssp cp\n")
    remote = tmp_path / "remote.txt"
    up = _run(home, "cp", str(src), f"srv1:{remote}", "--json")
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["sha256"] and remote.read_text() == "copied by mssp cp\n"
    out = tmp_path / "out"
    out.mkdir()
    collected = _run(home, "collect", "client:acme", str(remote), "--dest", str(out))
    assert collected.returncode == 0, collected.stderr
    assert "[1/1] ok" in collected.stderr
    assert (out / "acme/hq/srv1/remote.txt").read_text() == "copied by mssp cp\n"
    # a tampered download: exit status 1 for cp, 4 for collect, nothing written
    home.server.tamper_sftp_reads = True
    try:
        bad = _run(home, "cp", f"{HOST}:{remote}", str(tmp_path / "bad.txt"))
        assert bad.returncode == 1 and "differs" in bad.stderr
        assert not (tmp_path / "bad.txt").exists()
        again = _run(home, "collect", "client:acme", str(remote), "--dest", str(tmp_path / "c2"))
        assert again.returncode == 4 and "failed" in again.stderr
    finally:
        home.server.tamper_sftp_reads = False
    missing = _run(home, "cp", "nope/x/y:/etc/hosts", str(tmp_path))
    assert missing.returncode == 3


def _fake_rdp_client(folder: Path) -> Path:
    """A stand-in `xfreerdp`: connects to /v:ADDR:PORT, reads the banner, reports, exits 0."""
    script = folder / "xfreerdp"
    script.write_text(
        f"#!{sys.executable}\n"
        "import socket, sys, json\n"
        "v = next(a for a in sys.argv if a.startswith('/v:'))[3:]\n"
        "addr, port = v.rsplit(':', 1)\n"
        "s = socket.create_connection((addr, int(port)), timeout=10)\n"
        "banner = s.recv(100).decode()\n"
        f"open({str(folder / 'report.json')!r}, 'w').write(json.dumps("
        "{'argv': sys.argv[1:], 'banner': banner}))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_rdp_forwards_and_starts_the_client(home: Home, tmp_path: Path) -> None:
    home.server.allow_forwarding = True
    listener = socket.create_server(("127.0.0.1", 0))  # stands in for the host's RDP service
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        conn.sendall(b"RDP-STANDIN")
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_rdp_client(bin_dir)
    env = {**home.env, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [*home.mssp, "rdp", HOST, "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    listener.close()
    assert proc.returncode == 0, proc.stderr
    report = json.loads((bin_dir / "report.json").read_text())
    assert report["banner"] == "RDP-STANDIN"
    assert report["argv"][0].startswith("/v:127.0.0.1:") and "/u:mssp" in report["argv"]
    assert "starting" in proc.stderr and "forward" in proc.stderr


def test_rdp_without_a_client_prints_how_to_connect(home: Home, tmp_path: Path) -> None:
    env = {**home.env, "PATH": str(tmp_path)}  # no RDP client anywhere
    proc = subprocess.Popen(
        [*home.mssp, "rdp", HOST],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "No RDP client found" in first
        rest = [proc.stdout.readline() for _ in range(2)]
        assert "Connect your RDP client to 127.0.0.1:" in rest[0]
        proc.send_signal(2)
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0


def test_recordings_play_replays_the_output(home: Home) -> None:
    made = _run(home, "ssh", HOST, "--", "echo", "replay-me-$((2*21))")
    assert made.returncode == 0, made.stderr
    listing = json.loads(home.invoke("recordings", "list", "--json").output)
    newest = listing[0]
    assert newest["command"] == "echo replay-me-$((2*21))"
    played = _run(home, "recordings", "play", str(newest["id"]), "--speed", "50")
    assert played.returncode == 0, played.stderr
    assert "replay-me-42" in played.stdout
    # an edited recording is refused (its hash is in the index and the audit log)
    path = Path(newest["path"])
    path.write_text(path.read_text().replace("replay-me-42", "replay-me-43"))
    refused = _run(home, "recordings", "play", str(newest["id"]))
    assert refused.returncode == 1 and "changed since it was recorded" in refused.stderr
    assert _run(home, "recordings", "play", "99999").returncode == 3


def test_run_shell_blocking_runs_the_session_in_a_child(home: Home) -> None:
    """What the dashboard's `s` key calls inside App.suspend(): blocking, on this terminal."""
    code = (
        "import sys\n"
        "from mssp.config import load_settings\n"
        "from mssp.sessions.shell import run_shell_blocking\n"
        f"s = load_settings({{'MSSP_HOME': {str(home.path)!r}}})\n"
        f"sys.exit(run_shell_blocking(s, {HOST!r}, command='exit 5', pause_on_error=False))\n"
    )
    env = {k: v for k, v in home.env.items() if k != "MSSP_HOME"}
    term = PtyProcess([sys.executable, "-c", code], env)
    try:
        assert term.wait() == 5
        assert term.attrs() == term.initial_attrs
    finally:
        term.close()
    assert load_settings({"MSSP_HOME": str(home.path)}).data_dir == home.path
