"""`mssp ps` against the lab's SIMULATED Windows host (a WS-Management endpoint answering from
recorded replies, not Windows): lines in, output out, errors in red, location carried, exit."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mssp import asciicast, audit
from mssp.config import Settings
from mssp.errors import UsageError
from mssp.lab.winrm_endpoint import WinRMEndpoint
from mssp.lab.winrm_replies import Recordings, Reply, normalise_script
from mssp.sessions import recordings
from mssp.sessions.powershell import LOCATION_MARK, RED, powershell_session, split_location, wrap
from tests.connectors.winrm_fixtures import PASSWORD, USER, EndpointThread, running_endpoint
from tests.sessions.helpers import manager_for, seed

HOME_DIR = "C:\\Users\\Administrator"


def _replies() -> Recordings:
    """The lab's recordings (transfer simulations included), plus what PowerShell answers to
    the scripts `mssp ps` sends for this conversation."""
    rec = Recordings.load()

    def add(line: str, location: str | None, reply: Reply) -> None:
        rec.scripts[normalise_script(wrap(line, location))] = reply

    add("$env:COMPUTERNAME", None, Reply(stdout=f"WIN-LAB01\r\n\n{LOCATION_MARK}{HOME_DIR}"))
    add("cd C:\\Temp", HOME_DIR, Reply(stdout=f"\n{LOCATION_MARK}C:\\Temp"))
    add(
        "Get-ChildItem -Name",
        "C:\\Temp",
        Reply(stdout=f"backup.log\r\nreport.csv\r\n\n{LOCATION_MARK}C:\\Temp"),
    )
    add(
        "Write-Error 'backup target is offline'",
        "C:\\Temp",
        Reply(
            stdout=f"\n{LOCATION_MARK}C:\\Temp",
            stderr="Write-Error 'backup target is offline' : backup target is offline",
            exit_code=1,
        ),
    )
    return rec


@pytest.fixture(scope="module")
def endpoint() -> Iterator[tuple[EndpointThread, WinRMEndpoint]]:
    with running_endpoint(recordings=_replies()) as served:
        yield served


async def _windows_host(settings: Settings, endpoint: WinRMEndpoint):
    from mssp.store.credentials import add_credential
    from mssp.store.inventory import create_host

    vault, _ = await seed(settings, [])
    await add_credential(
        vault, client_slug="acme", name="winadmin", kind="password", secret=PASSWORD
    )
    host = await create_host(
        "acme",
        "hq",
        "win1",
        address="127.0.0.1",
        port=endpoint.port,
        username=USER,
        transport="winrm",
        credential="winadmin",
        options={"scheme": "http"},  # NTLM with message encryption (sealed), as the lab serves
    )
    return vault, host


def _lines(*lines: str):
    queue = list(lines)
    prompts: list[str] = []

    async def read_line(prompt: str) -> str | None:
        prompts.append(prompt)
        return queue.pop(0) if queue else None

    return read_line, prompts


async def test_powershell_prompt_runs_lines_and_shows_errors_in_red(db: Settings, endpoint) -> None:
    _, ep = endpoint
    vault, host = await _windows_host(db, ep)
    read_line, prompts = _lines(
        "$env:COMPUTERNAME",
        "cd C:\\Temp",
        "Get-ChildItem -Name",
        "",
        "Write-Error 'backup target is offline'",
        "exit 4",
        "never sent",
    )
    shown: list[str] = []
    async with manager_for(db, vault) as manager:
        result = await powershell_session(
            db, manager, host, read_line=read_line, write=shown.append, notice=shown.append
        )
    screen = "".join(shown)
    assert result.exit_status == 4 and result.commands == 4
    assert "WIN-LAB01" in screen and "backup.log\r\nreport.csv" in screen
    assert f"{RED}Write-Error 'backup target is offline' : backup target is offline" in screen
    assert "(exit 1)" in screen
    assert LOCATION_MARK not in screen
    assert prompts[1] == f"PS win1 {HOME_DIR}> " and prompts[2] == "PS win1 C:\\Temp> "
    assert len(prompts) == 6  # "never sent" was never read: `exit 4` left
    (rec,) = await recordings.list_recordings()
    assert rec.kind == "powershell" and rec.exit_status == 4 and rec.state == "finished"
    text = asciicast.output_text(asciicast.read(Path(rec.path))[1])
    assert "PS win1 C:\\Temp> Get-ChildItem -Name" in text and "report.csv" in text
    outcome = (await audit.entries(action="session.powershell"))[-1]
    assert outcome.as_dict()["detail"]["recording_sha256"] == rec.sha256


async def test_end_of_input_leaves(db: Settings, endpoint) -> None:
    _, ep = endpoint
    vault, host = await _windows_host(db, ep)
    read_line, _ = _lines("$env:COMPUTERNAME")
    shown: list[str] = []
    async with manager_for(db, vault) as manager:
        result = await powershell_session(
            db,
            manager,
            host,
            read_line=read_line,
            write=shown.append,
            notice=shown.append,
            color=False,
        )
    assert result.exit_status == 0 and RED not in "".join(shown)


async def test_ps_refuses_an_ssh_host(db: Settings) -> None:
    from mssp.store.inventory import create_host

    vault, _ = await seed(db, [])
    host = await create_host("acme", "hq", "linux1", address="127.0.0.1")
    async with manager_for(db, vault) as manager:
        with pytest.raises(UsageError, match="mssp ssh"):
            await powershell_session(
                db, manager, host, read_line=_lines()[0], write=print, notice=print
            )


def test_location_marker_parsing() -> None:
    assert split_location(f"a\r\nb\r\n\n{LOCATION_MARK}D:\\x") == ("a\r\nb\r\n", "D:\\x")
    assert split_location("no marker") == ("no marker", None)
    assert "Set-Location -LiteralPath 'C:\\it''s'" in wrap("dir", "C:\\it's")


def test_mssp_ps_command_line_by_line(home, endpoint) -> None:
    """`mssp ps` as a user runs it (lines from a pipe here; a terminal works the same way)."""
    import subprocess

    _, ep = endpoint
    added = home.invoke("cred", "add", "acme/winadmin", "--password-stdin", input=PASSWORD)
    assert added.exit_code == 0, added.output
    added = home.invoke(
        "host", "add", "acme/hq/win1", "--transport", "winrm", "--address", "127.0.0.1",
        "--port", str(ep.port), "--user", USER, "--credential", "winadmin",
        "--option", "scheme=http",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    proc = subprocess.run(
        [*home.mssp, "ps", "win1"],
        env=home.env,
        input="$env:COMPUTERNAME\ncd C:\\Temp\nGet-ChildItem -Name\nexit 2\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "WIN-LAB01" in proc.stdout and "report.csv" in proc.stdout
    assert "PS win1 C:\\Temp> " in proc.stdout
    assert RED not in proc.stdout  # no colour codes into a pipe
    assert "3 command(s); recording" in proc.stderr


async def test_cp_to_and_from_a_windows_host_is_verified(
    db: Settings, endpoint, tmp_path: Path
) -> None:
    """WinRM transfers (chunked, Get-FileHash on the far side), through the same `cp` code."""
    from mssp.errors import TransferError
    from mssp.sessions.hosts import resolve_host
    from mssp.sessions.transfer import Endpoint, copy

    runner, ep = endpoint
    vault, _ = await _windows_host(db, ep)
    local = tmp_path / "payload.bin"
    local.write_bytes(os.urandom(200_000))
    back = tmp_path / "back.bin"
    async with manager_for(db, vault) as manager:
        temp = Endpoint("win1", "C:\\Windows\\Temp\\")
        up = await copy(manager, resolve_host, Endpoint(None, str(local)), temp)
        assert up.remote_path == "C:\\Windows\\Temp\\payload.bin"
        down = await copy(
            manager, resolve_host, Endpoint("win1", up.remote_path), Endpoint(None, str(back))
        )
        assert back.read_bytes() == local.read_bytes() and down.sha256 == up.sha256
        runner.do(lambda: setattr(ep, "corrupt_writes", True))
        try:
            with pytest.raises(TransferError):
                await copy(
                    manager,
                    resolve_host,
                    Endpoint(None, str(local)),
                    Endpoint("win1", "C:\\Windows\\Temp\\tampered.bin"),
                )
        finally:
            runner.do(lambda: setattr(ep, "corrupt_writes", False))
