"""`mssp ssh` driven through a real pseudo-terminal against a real SSH server (in-process asyncssh
running real local commands): typing, resizing, exit status, the recording, and the terminal."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import termios
from pathlib import Path

from mssp import asciicast
from tests.sessions.conftest import HOST, Home, make_home
from tests.sessions.ptyproc import PtyProcess

PROMPT = rb"[#$] $"
SUDO_PASSWORD = b"Tr0ub4dor-sudo-CANARY-93f1"


def _recordings(home: Home) -> list[dict]:
    result = home.invoke("recordings", "list", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _audit(home: Home) -> list[dict]:
    result = home.invoke("audit", "list", "--action", "session", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _shell(home: Home, *extra: str, cols: int = 100, rows: int = 30) -> PtyProcess:
    return PtyProcess([*home.mssp, "ssh", HOST, *extra], home.env, cols=cols, rows=rows)


def test_ssh_types_resizes_exits_and_records_what_the_terminal_showed(home: Home) -> None:
    before = {r["id"] for r in _recordings(home)}
    term = _shell(home)
    try:
        term.expect(PROMPT)
        # the echo shows the expression; only the shell's output shows the result
        term.send(b'echo hel""lo-$((6*7))\r')
        term.expect(rb"\rhello-42\r\n")
        mark = len(term.output)
        term.send(b"stty size\r")
        term.expect(rb"\r30 100\r\n", start=mark)
        # a window resize reaches the remote terminal (SIGWINCH -> window-change)
        term.resize(120, 40)
        for _ in range(50):
            mark = len(term.output)
            term.send(b"stty size\r")
            # after SIGWINCH bash may redraw its line, so the size can follow the echoed
            # command directly ("stty size40 120"): match the digits, not a line start
            found = term.expect(rb"(?<!\d)(\d+ \d+)\r\n", start=mark)
            if found.group(1) == b"40 120":
                break
        else:
            raise AssertionError("the remote terminal never saw the new size")
        # in raw mode Ctrl-C is a byte for the host, not a signal for mssp
        term.send(b"sleep 30\r")
        term.send(b"\x03")
        term.expect(rb"\^C")
        term.send(b"exit 7\r")
        status = term.wait()
        terminal_text = term.output.decode("utf-8", "replace")
        assert status == 7, terminal_text[-1000:]
        assert term.attrs() == term.initial_attrs  # the local terminal is restored
    finally:
        term.close()

    new = [r for r in _recordings(home) if r["id"] not in before]
    assert len(new) == 1
    rec = new[0]
    assert rec["host"] == HOST and rec["exit_status"] == 7 and rec["state"] == "finished"
    path = Path(rec["path"])
    header, events = asciicast.read(path)  # strict asciicast v2 parse
    assert (header.width, header.height) == (100, 30)
    assert any(e.code == "r" and e.data == "120x40" for e in events)
    assert all(e.code in ("o", "r") for e in events)  # output only: no input events
    shown = asciicast.output_text(events)
    assert "hello-42" in shown and "40 120" in shown
    # the recording reproduces the terminal: everything the session printed, byte for byte,
    # between mssp's own notices (which go to stderr before and after the session)
    assert shown and shown in terminal_text
    outside = terminal_text.replace(shown, "")
    assert "hello-42" not in outside and "stty size" not in outside
    # its hash is in the index and in the audit entry
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert rec["sha256"] == digest and rec["bytes"] == path.stat().st_size
    outcomes = [e for e in _audit(home) if e["detail"].get("recording_id") == rec["id"]]
    assert len(outcomes) == 1
    assert outcomes[0]["detail"]["recording_sha256"] == digest
    assert outcomes[0]["detail"]["exit_status"] == 7
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_password_typed_at_sudo_prompt_is_not_recorded(home: Home) -> None:
    before = {r["id"] for r in _recordings(home)}
    term = _shell(home)
    try:
        term.expect(PROMPT)
        # sudo as an unprivileged user asks for a password on the terminal with echo off; the
        # prompt is computed by the shell so that the echoed command line cannot match it
        term.send(
            b"setpriv --reuid=65534 --regid=65534 --clear-groups "
            b"sudo -k -p SUDO-$((6*7))-PROMPT: true; echo sudo-rc=$?\r"
        )
        first = term.expect(rb"SUDO-42-PROMPT:")
        term.send(SUDO_PASSWORD + b"\r")
        term.expect(rb"Sorry, try again", start=first.end())
        term.expect(rb"SUDO-42-PROMPT:", start=first.end())
        term.send(b"\x03")  # give up at the second prompt
        term.expect(rb"sudo-rc=1")
        term.send(b"exit\r")
        assert term.wait() == 0
    finally:
        term.close()
    assert SUDO_PASSWORD not in term.output  # the premise: sudo did not echo it
    (rec,) = [r for r in _recordings(home) if r["id"] not in before]
    raw = Path(rec["path"]).read_bytes()
    assert b"SUDO-42-PROMPT:" in raw and b"Sorry, try again" in raw
    assert SUDO_PASSWORD not in raw
    assert SUDO_PASSWORD.decode() not in json.dumps(_audit(home))


def test_terminal_restored_when_the_connection_drops(home: Home) -> None:
    term = _shell(home)
    try:
        term.expect(PROMPT)
        raw_now = term.attrs()
        assert not raw_now[3] & termios.ECHO  # raw mode while the session runs
        home.thread.call(home.server.stop())
        try:
            status = term.wait()
        finally:
            home.thread.call(home.server.start())
        assert status == 255
        assert term.attrs() == term.initial_attrs
        assert b"connection was lost" in term.output
    finally:
        term.close()


def test_terminal_restored_on_sigterm(home: Home) -> None:
    term = _shell(home)
    try:
        term.expect(PROMPT)
        term.proc.send_signal(signal.SIGTERM)
        assert term.wait() == 255
        assert term.attrs() == term.initial_attrs
    finally:
        term.close()


def test_unknown_host_fails_cleanly_without_touching_the_terminal(home: Home) -> None:
    term = PtyProcess([*home.mssp, "ssh", "acme/hq/nope"], home.env)
    try:
        assert term.wait() == 3
        assert b"not found" in term.output.lower() or b"no host" in term.output.lower()
        assert term.attrs() == term.initial_attrs
    finally:
        term.close()


def test_recording_policy_refuse_and_warn(tmp_path: Path, server_thread) -> None:
    thread, srv = server_thread
    home = make_home(tmp_path / "h", srv, thread)
    # a file where the recordings folder should be: the recording cannot be created
    (home.path / "recordings").write_text("not a folder")

    def ssh(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*home.mssp, "ssh", *args],
            env=home.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )

    refused = ssh(HOST, "--", "echo", "ran-anyway")
    assert refused.returncode == 1, refused.stderr
    assert "session refused" in refused.stderr and "ran-anyway" not in refused.stdout
    assert _audit(home) == []  # nothing started, nothing to audit
    warned = ssh("--recording-policy", "warn", HOST, "--", "echo", "ran-ok")
    assert warned.returncode == 0, warned.stderr
    assert "ran-ok" in warned.stdout and "NOT recorded" in warned.stderr
    assert _recordings(home) == []
    outcome = [e for e in _audit(home) if e["result"] == "ok"]
    assert outcome and outcome[0]["detail"]["recording_state"] == "unrecorded"
