"""`mssp schedule`, `mssp backups`, `mssp notify` and `mssp daemon --install-unit` end to end
(CliRunner on a real SQLite home; notification URLs stay secret)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mssp import db as mssp_db
from mssp.cli import cli
from mssp.config import load_settings
from tests.conftest import run_sync

PASS = "cli test passphrase"
TOKEN = "tok-5e1d0b7a93-SECRET"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def run(home: Path, tmp_path: Path):
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        env = {"MSSP_HOME": str(home), "MSSP_VAULT_PASSPHRASE": PASS, "HOME": str(tmp_path)}
        return runner.invoke(cli, list(args), input=input, env=env, catch_exceptions=False)

    assert invoke("init").exit_code == 0
    assert invoke("client", "add", "Acme Dental", "--timezone", "Europe/Berlin").exit_code == 0
    assert invoke("site", "add", "acme-dental/main").exit_code == 0
    added = invoke("host", "add", "acme-dental/main/fs01", "--address", "192.0.2.10",
                   "--tag", "backed-up")  # fmt: skip
    assert added.exit_code == 0, added.output
    return invoke


def test_schedule_lifecycle(run) -> None:
    added = run("schedule", "add", "nightly-verify", "--cron", "30 2 * * *", "--task",
                "backup.verify", "--target", "tag:backed-up", "--param", "repository=/srv/r",
                "--param", "password=restic-pw", "--json")  # fmt: skip
    assert added.exit_code == 0, added.output
    info = json.loads(added.output)
    assert info["timezone"] == "Europe/Berlin"  # the one client's zone
    assert info["params"] == {"repository": "/srv/r", "password": "restic-pw"}
    assert info["next_run"].endswith(("01:30:00+00:00", "00:30:00+00:00"))
    listed = json.loads(run("schedule", "list", "--json").output)
    assert [s["name"] for s in listed] == ["nightly-verify"] and listed[0]["enabled"]
    text = run("schedule", "list").output
    assert "nightly-verify" in text and "Europe/Berlin" in text
    assert run("schedule", "disable", "nightly-verify").exit_code == 0
    assert json.loads(run("schedule", "list", "--json").output)[0]["next_run"] is None
    assert run("schedule", "enable", "nightly-verify").exit_code == 0
    again = run("schedule", "add", "nightly-verify", "--cron", "@daily", "--task", "command",
                "--target", "all", "--param", "cmd=true")  # fmt: skip
    assert again.exit_code == 3 and "already exists" in again.output
    assert run("schedule", "remove", "nightly-verify").exit_code == 0
    assert json.loads(run("schedule", "list", "--json").output) == []
    assert run("schedule", "remove", "nightly-verify").exit_code == 3


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--cron", "99 2 * * *", "--task", "command", "--param", "cmd=true"), "minute"),
        (("--cron", "@daily", "--task", "nope"), "unknown task"),
        (("--cron", "@daily", "--task", "backup.verify", "--param", "password=x"), "repository"),
        (
            ("--cron", "@daily", "--task", "command", "--param", "cmd=true", "--timezone", "X/Y"),
            "time zone",
        ),
        (("--cron", "@daily", "--task", "command", "--param", "nokey"), "KEY=VALUE"),
    ],
)
def test_bad_schedule_is_a_usage_error_and_stores_nothing(run, args, words) -> None:
    result = run("schedule", "add", "bad", "--target", "all", *args)
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert json.loads(run("schedule", "list", "--json").output) == []


def test_backups_status_and_history(run, home: Path) -> None:
    settings = load_settings({"MSSP_HOME": str(home)})

    async def seed() -> None:
        from mssp.models.backups import BackupCheck

        async with mssp_db.database(settings):
            for day, state, reason in ((24, "VERIFIED", "all good"), (25, "CORRUPT", "pack bad")):
                await BackupCheck.create(
                    host_name="acme-dental/main/fs01", client_slug="acme-dental", state=state,
                    reason=reason, evidence={"latest": {"short_id": f"abcd00{day}"},
                                             "check": {"subset": "3/7"}},
                    checked_at=datetime(2026, 11, day, 2, 31, tzinfo=UTC),
                )  # fmt: skip

    run_sync(seed())
    status = json.loads(run("backups", "status", "--json").output)
    assert [(s["host"], s["state"]) for s in status] == [("acme-dental/main/fs01", "CORRUPT")]
    table = run("backups", "status").output
    assert "CORRUPT" in table and "pack bad" in table and "abcd0025" in table
    history = json.loads(run("backups", "history", "acme-dental/main/fs01", "--json").output)
    assert [h["state"] for h in history] == ["CORRUPT", "VERIFIED"]
    assert json.loads(run("backups", "status", "--client", "nobody", "--json").output) == []


class _Hook(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self) -> None:
        _Hook.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def test_notify_targets_never_show_their_urls(run, hook: int) -> None:
    url = f"json://127.0.0.1:{hook}/hook/{TOKEN}"
    added = run("notify", "add", "--name", "ops", "--url-stdin", input=url + "\n")
    assert added.exit_code == 0, added.output
    mail = run("notify", "add", "--name", "acme-mail", "--client", "acme-dental", "--url-stdin",
               input="mailto://mssp:mail-pw@example.com?smtp=127.0.0.1&port=2525"
                     "&to=consultant@example.com&mode=insecure\n")  # fmt: skip
    assert mail.exit_code == 0, mail.output
    listed = run("notify", "list", "--json")
    assert {(t["name"], t["client"]) for t in json.loads(listed.output)} == {
        ("ops", "(all)"), ("acme-mail", "acme-dental")}  # fmt: skip
    assert TOKEN not in listed.output and TOKEN not in run("notify", "list").output
    assert TOKEN not in run("cred", "list").output
    bad = run("notify", "add", "--name", "x", "--url-stdin", input="not a url\n")
    assert bad.exit_code == 2 and "not a url" not in bad.output
    sent = run("notify", "test", "--json")
    assert sent.exit_code == 0, sent.output
    assert json.loads(sent.output) == {"sent": 1, "failed": 0}  # the global target only
    assert len(_Hook.received) == 1 and b"test message from mssp" in _Hook.received[0]
    assert run("notify", "remove", "ops").exit_code == 0
    assert run("notify", "remove", "acme-mail", "--client", "acme-dental").exit_code == 0
    assert json.loads(run("notify", "list", "--json").output) == []


def test_install_unit_writes_a_user_unit(run, tmp_path: Path, home: Path) -> None:
    result = run("daemon", "--install-unit", "--poll", "20")
    assert result.exit_code == 0, result.output
    unit = (tmp_path / ".config/systemd/user/mssp-daemon.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert exec_start.split()[1:] == ["daemon", "--poll", "20"]
    assert exec_start.split()[0].endswith("/mssp")
    assert f"Environment=MSSP_HOME={home}" in unit
    assert "WantedBy=default.target" in unit and PASS not in unit


def test_every_new_command_has_help(run) -> None:
    for args in (("schedule",), ("schedule", "add"), ("backups", "status"), ("notify", "add"),
                 ("daemon",)):  # fmt: skip
        result = run(*args, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output


def test_daemon_runs_in_the_foreground_and_stops_on_sigterm(run, home: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "MSSP_HOME": str(home), "MSSP_VAULT_PASSPHRASE": PASS}
    mssp = str(Path(sys.executable).with_name("mssp"))
    proc = subprocess.Popen([mssp, "daemon", "--poll", "0.2"], env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        line = proc.stderr.readline() if proc.stderr else ""
        assert "mssp daemon running" in line and time.monotonic() < deadline
        time.sleep(0.5)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in err
