"""Hostile host output stays data: in CommandResult, HostRun rows and events, and CLI output.

A managed host may be compromised; what it prints is an attacker's input. The payload below holds
what terminals obey (clear screen, cursor moves, window title OSC 0, clipboard write OSC 52, DCS,
8-bit C1 CSI, a lone CR that overwrites a line, BEL), bidi overrides, NUL bytes (PostgreSQL text
refuses them) and invalid UTF-8, and it is also sent as 10 MiB. Each layer must keep it as data:

- the connector returns exactly what was sent (decoded as UTF-8 with replacement), capped, with
  the dropped bytes counted, and nothing raised;
- the engine stores and emits it neutralised (mssp.output), on SQLite and PostgreSQL, capped with
  a visible mark;
- the CLI (text, --json, --jsonl, runs show -o) prints no raw control character at all.
- a hostile sshd's disconnect reason is neutralised in the host's error like output.

The pure neutraliser is tested from a table in tests/engine/test_output_neutralised.py, and escape
sequences through the engine in tests/engine/test_engine_runs.py; this file adds the NULs, invalid
UTF-8, C1, 10 MiB and the CLI, end to end.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from pathlib import Path

import asyncssh
import pytest

from mssp.connectors.ssh import SSHConnector
from mssp.engine import RunOptions
from mssp.events import HostOutput
from mssp.models.runs import HostRun
from mssp.output import neutralise
from tests.connectors.conftest import ssh_options
from tests.engine.conftest import engine_for, make_hosts
from tests.engine.test_cli_runs import fleet, mssp
from tests.sshserver import SSHTestServer

__all__ = ["fleet"]  # a fixture, used by name

PAYLOAD = (
    b"before\x1b[2J\x1b[H"  # clear the screen, cursor home
    b"\x1b]0;pwned-title\x07"  # set the window title
    b"\x1b]52;c;cm0gLXJmIH4K\x07"  # write the clipboard
    b"\x1bP+q544e\x1b\\"  # DCS request
    b"\xc2\x9b31mC1-CSI"  # 8-bit CSI, as UTF-8
    b"ok\rFAKE-OK\x07"  # a lone CR rewrites the line; bell
    b"nul\x00nul\x00"  # NUL bytes
    b"bad-utf8\xff\xfe\xc3\x28\xed\xa0\x80"  # invalid UTF-8, a lone surrogate
    b"admin\xe2\x80\xaeresu\xe2\x80\xa8"  # RIGHT-TO-LEFT OVERRIDE, LINE SEPARATOR
    b"\x7fend\n"
)
TEN_MIB = 10 * 1024 * 1024

# What no view may show raw: C0 except tab and newline, DEL, C1, bidi controls, U+2028/2029.
RAW_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]"
)


def raw_controls(text: str) -> list[str]:
    return sorted({f"U+{ord(c):04X}" for c in RAW_CONTROL.findall(text)})


@pytest.fixture
def payloads(tmp_path: Path) -> dict[str, Path]:
    """The payload once, and repeated to 10 MiB, as files the test server's commands cat."""
    small = tmp_path / "hostile.bin"
    small.write_bytes(PAYLOAD)
    big = tmp_path / "hostile-10mib.bin"
    big.write_bytes((PAYLOAD * (TEN_MIB // len(PAYLOAD) + 1))[:TEN_MIB])
    return {"small": small, "big": big}


def _emit(path: Path, *, status: int = 0) -> str:
    """Send a file to stdout and to stderr, then exit with ``status``."""
    quoted = shlex.quote(str(path))
    return f"cat {quoted}; cat {quoted} >&2; exit {status}"


async def test_hostile_host_output_stays_data_in_command_results(
    ssh_server: SSHTestServer, payloads: dict[str, Path]
) -> None:
    async with SSHConnector(ssh_options(ssh_server)) as conn:
        small = await conn.run(_emit(payloads["small"], status=3))
        big = await conn.run(_emit(payloads["big"]))
        after = await conn.run("echo still-here")
    expected = PAYLOAD.decode("utf-8", errors="replace")
    assert (small.exit_status, small.stdout, small.stderr) == (3, expected, expected)
    assert "\x00" in small.stdout and "\ufffd" in small.stdout  # data, kept as it came
    assert not small.truncated
    cap = ssh_options(ssh_server).output_cap
    for text in (big.stdout, big.stderr):
        prefix = (PAYLOAD * (cap // len(PAYLOAD))).decode("utf-8", errors="replace")
        assert text.startswith(prefix) and len(text.encode("utf-8")) <= cap * 3
    assert big.truncated and big.dropped_bytes == 2 * (TEN_MIB - cap)
    assert after.stdout == "still-here\n"  # the connection survived the flood


async def test_hostile_host_output_stays_data_in_host_runs_and_events(
    db, ssh_server: SSHTestServer, payloads: dict[str, Path]
) -> None:
    hosts = make_hosts(ssh_server, 2)
    async with engine_for(db, ssh_server, hosts) as (engine, rec):
        small_run = await engine.start_run(
            "command", "acme/hq/h000", params={"cmd": _emit(payloads["small"], status=3)}
        )
        small = await engine.wait(small_run)
        big_run = await engine.start_run(
            "command",
            "acme/hq/h001",
            params={"cmd": _emit(payloads["big"])},
            options=RunOptions(output_cap=64 * 1024),
        )
        big = await engine.wait(big_run)
        await engine.wait_idle()
    expected = neutralise(PAYLOAD.decode("utf-8", errors="replace"))
    assert "\\x1b]52;c;" in expected and "\\x00" in expected and "\\u202e" in expected
    assert small.hosts[0].state == "failed" and small.hosts[0].exit_status == 3
    rows = await HostRun.filter(run_id__in=[small_run, big_run]).order_by("run_id")
    assert (rows[0].stdout, rows[0].stderr) == (expected, expected)
    assert rows[1].state == "ok" and rows[1].truncated
    assert "output truncated" in rows[1].stdout and len(rows[1].stdout) < 64 * 1024 + 200
    assert big.hosts[0].truncated
    texts = [
        *(getattr(r, name) for r in rows for name in ("stdout", "stderr", "error")),
        json.dumps(small.hosts[0].__dict__, default=str, ensure_ascii=False),
        *(e.text for e in rec.of(HostOutput)),
    ]
    assert rec.of(HostOutput), "the engine emitted no output events"
    assert [raw_controls(t) for t in texts] == [[] for _ in texts]


async def test_hostile_host_output_stays_data_in_what_the_cli_prints(
    fleet, payloads: dict[str, Path]
) -> None:
    cmd = _emit(payloads["small"], status=3)
    printed: dict[str, str] = {}
    code, out, err = await mssp(fleet, "exec", "acme/hq/web1", "--", cmd)
    assert code == 4, err
    printed["exec"], printed["exec stderr"] = out, err
    assert "\\x1b]0;pwned-title\\x07" in out  # shown, visibly, as what it is
    code, out, err = await mssp(fleet, "exec", "acme/hq/web1", "--json", "--", cmd)
    printed["exec --json"], printed["exec --json stderr"] = out, err
    doc = json.loads(out)
    printed["exec --json decoded"] = json.dumps(doc, ensure_ascii=False)
    code, out, err = await mssp(fleet, "exec", "acme/hq/web2", "--jsonl", "--", cmd)
    printed["exec --jsonl"] = out
    printed["exec --jsonl decoded"] = "\n".join(
        json.dumps(json.loads(line), ensure_ascii=False) for line in out.splitlines()
    )
    code, out, err = await mssp(fleet, "runs", "show", str(doc["run_id"]), "-o")
    assert code == 0 or out, err
    printed["runs show -o"], printed["runs show stderr"] = out, err
    assert "pwned-title" in printed["runs show -o"]
    found = {where: raw_controls(text) for where, text in printed.items()}
    assert found == {where: [] for where in printed}


class _DisconnectingServer(asyncssh.SSHServer):
    """A hostile sshd: a banner and a disconnect reason full of terminal controls."""

    REASON = "bye\x1b]0;pwned-title\x07\x1b[2J\x00nul\u202eevil\x9b31m"

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn

    def begin_auth(self, username: str) -> bool:
        self.conn.send_auth_banner(self.REASON)
        asyncio.get_running_loop().call_later(
            0.05, self.conn.disconnect, asyncssh.DISC_BY_APPLICATION, self.REASON
        )
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        await asyncio.sleep(2)
        return False


async def test_hostile_disconnect_reason_stays_data_in_errors(
    db, ssh_server: SSHTestServer
) -> None:
    listener = await asyncssh.listen(
        "127.0.0.1", 0, server_factory=_DisconnectingServer, server_host_keys=[ssh_server.host_key]
    )
    try:
        ssh_server.ports[0] = listener.sockets[0].getsockname()[1]
        async with engine_for(db, ssh_server, make_hosts(ssh_server, 1)) as (engine, rec):
            run_id = await engine.start_run("command", "all", params={"cmd": "true"})
            summary = await engine.wait(run_id)
    finally:
        listener.close()
    row = await HostRun.get(run_id=run_id)
    assert row.state == "unreachable" and "pwned-title" in row.error, row.error
    texts = [row.error, summary.hosts[0].error]
    texts += [v for e in rec.events for v in vars(e).values() if isinstance(v, str)]
    assert [raw_controls(t) for t in texts] == [[] for _ in texts]
