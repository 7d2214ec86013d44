"""WinRM connector through real pywinrm against the lab's served WS-Management endpoint.

Windows cannot run here: every "Windows" reply below comes from recordings served by
mssp/lab/winrm_endpoint.py (a simulated Windows host), not from a real Windows machine. What is
real: pywinrm, requests, TLS, NTLM (pyspnego on both sides), message encryption, the WS-Man
shell protocol, timeouts and the connector's error mapping.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mssp.connectors.base import ConnectOptions
from mssp.connectors.winrm import WinRMConnector
from mssp.connectors.winrm_scripts import TRANSFER_SCRIPTS, decode_clixml, encode_powershell
from mssp.errors import (
    AuthError,
    CommandError,
    CommandTimeout,
    ConfigError,
    ConnectError,
    HostKeyError,
    InsecureTransportError,
    TransferError,
    UsageError,
)
from mssp.lab.winrm_endpoint import WinRMEndpoint
from mssp.lab.winrm_pki import TLSFiles, make_test_pki
from mssp.lab.winrm_replies import RECORDINGS_DIR
from tests.connectors.winrm_fixtures import PASSWORD, USER, EndpointThread, running_endpoint

CANARY = "mssp-canary-7f3a9c51e2"
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_test_pki(tmp_path_factory.mktemp("winrm-pki"))


@pytest.fixture(scope="module")
def https(pki: TLSFiles) -> Iterator[tuple[EndpointThread, WinRMEndpoint]]:
    """Simulated Windows host, HTTPS listener, Basic and NTLM."""
    with running_endpoint(tls=pki, capture=True) as served:
        yield served


@pytest.fixture(scope="module")
def http() -> Iterator[tuple[EndpointThread, WinRMEndpoint]]:
    """Simulated Windows host, HTTP listener. It would even accept Basic and plaintext, so any
    refusal seen in these tests is the connector's own."""
    with running_endpoint(capture=True, allow_unencrypted=True) as served:
        yield served


def options(endpoint: WinRMEndpoint, *, password: str = PASSWORD, **extra: Any) -> ConnectOptions:
    return ConnectOptions(
        host="lab-acme/hq/win01",
        address="127.0.0.1",
        port=endpoint.port,
        username=USER,
        password=password,
        connect_timeout=3.0,
        extra={k: str(v) for k, v in extra.items()},
    )


def https_options(endpoint: WinRMEndpoint, pki: TLSFiles, **extra: Any) -> ConnectOptions:
    return options(endpoint, ca_file=pki.ca_cert, **extra)


@pytest.mark.parametrize("auth", ["basic", "ntlm"])
async def test_powershell_commands_over_https(https, pki: TLSFiles, auth: str) -> None:
    _, endpoint = https
    async with WinRMConnector(https_options(endpoint, pki, auth=auth)) as conn:
        assert conn.is_connected
        name = await conn.run("$env:COMPUTERNAME", check=True)
        assert (name.stdout, name.stderr, name.exit_status) == ("WIN-LAB01\r\n", "", 0)
        caption = await conn.run("(Get-CimInstance -ClassName Win32_OperatingSystem).Caption")
        assert caption.stdout.strip() == "Microsoft Windows Server 2022 Standard"
        greeting = await conn.run("Write-Output 'Grüße aus Zürich'")
        assert greeting.stdout == "Grüße aus Zürich\r\n"  # UTF-8 shell code page
    assert not conn.is_connected


async def test_exit_codes_and_powershell_errors(https, pki: TLSFiles) -> None:
    _, endpoint = https
    async with WinRMConnector(https_options(endpoint, pki)) as conn:
        assert (await conn.run("exit 3")).exit_status == 3
        failed = await conn.run("Write-Error 'backup target is offline'")
        assert failed.exit_status == 1
        assert failed.stderr.startswith("Write-Error 'backup target is offline' : backup target")
        assert "CLIXML" not in failed.stderr and "<Objs" not in failed.stderr
        with pytest.raises(CommandError) as caught:
            await conn.run("Get-Item -LiteralPath 'C:\\does-not-exist.txt'", check=True)
        assert caught.value.result.exit_status == 1
        assert "because it does not exist" in caught.value.result.stderr


async def test_unknown_commands_are_not_recognized(https, pki: TLSFiles) -> None:
    _, endpoint = https
    async with WinRMConnector(https_options(endpoint, pki)) as conn:
        ps = await conn.run("Get-Frobnicator -All")
        assert ps.exit_status == 1
        assert "The term 'Get-Frobnicator' is not recognized as the name of a cmdlet" in ps.stderr
        cmd = await conn.run_cmd("frobnicate /all")
        assert cmd.exit_status == 1
        assert "'frobnicate' is not recognized as an internal or external command" in cmd.stderr


async def test_cmd_exe_command_lines(https, pki: TLSFiles) -> None:
    _, endpoint = https
    async with WinRMConnector(https_options(endpoint, pki)) as conn:
        assert (await conn.run_cmd("whoami")).stdout == "win-lab01\\administrator\r\n"
        missing = await conn.run_cmd("dir C:\\nope")
        assert (missing.exit_status, missing.stderr) == (1, "File Not Found\r\n")


async def test_stdin_and_env_never_in_the_command_line(http) -> None:
    _, endpoint = http
    secret = "s3cr3t-from-the-vault"
    async with WinRMConnector(options(endpoint, scheme="http")) as conn:
        echoed = await conn.run("[Console]::Out.Write([Console]::In.ReadToEnd())", stdin="héllo\n")
        assert echoed.stdout == "héllo\n"
        before = len(endpoint.plaintext)
        env = await conn.run(
            "[Console]::Out.Write($env:MSSP_GREETING)", env={"MSSP_GREETING": secret}
        )
        assert env.stdout == secret
        with pytest.raises(UsageError):
            await conn.run("$env:COMPUTERNAME", env={"BAD NAME": "x"})
        assert (await conn.run("$env:COMPUTERNAME")).ok  # the main shell is untouched
    sent = [m for m in endpoint.plaintext[before:] if secret.encode() in m]
    assert sent and all(b"rsp:Environment" in m and b"rsp:CommandLine" not in m for m in sent)


async def test_output_beyond_the_cap_is_counted_and_dropped(https, pki: TLSFiles) -> None:
    _, endpoint = https
    cap = 64 * 1024
    opts = https_options(endpoint, pki)
    opts = ConnectOptions(**{**opts.__dict__, "output_cap": cap})
    async with WinRMConnector(opts) as conn:
        result = await conn.run("1..20000 | ForEach-Object { 'mssp-output-line-0123456789' }")
    total = len("mssp-output-line-0123456789\r\n") * 20000
    assert result.exit_status == 0 and result.truncated
    assert len(result.stdout) == cap and result.dropped_bytes == total - cap


async def test_timeout_raises_command_timeout_and_the_connection_survives(https, pki) -> None:
    _, endpoint = https
    async with WinRMConnector(
        https_options(endpoint, pki, operation_timeout=1, read_timeout=5)
    ) as conn:
        started = time.monotonic()
        with pytest.raises(CommandTimeout) as caught:
            await conn.run("Start-Sleep -Seconds 30", timeout=1.5)
        assert 1.4 < time.monotonic() - started < 4
        assert caught.value.result.exit_status is None
        # Receive returns "operation timeout" every second; the connector keeps waiting.
        slow = await conn.run("Start-Sleep -Seconds 2; 'done'", timeout=10)
        assert slow.stdout == "done\r\n"
        assert (await conn.run("$env:COMPUTERNAME")).ok


async def test_runs_without_a_timeout_get_the_connector_deadline(https, pki) -> None:
    """pywinrm retries operation timeouts forever; the connector's own deadline ends it."""
    _, endpoint = https
    opts = https_options(endpoint, pki, operation_timeout=1, read_timeout=5)
    async with WinRMConnector(opts, command_timeout=1.0) as conn:
        with pytest.raises(CommandTimeout, match="within 1s"):
            await conn.run("Start-Sleep -Seconds 30")


async def test_cancelled_run_releases_the_connection(https, pki: TLSFiles) -> None:
    _, endpoint = https
    async with WinRMConnector(
        https_options(endpoint, pki, operation_timeout=1, read_timeout=5)
    ) as conn:
        task = asyncio.create_task(conn.run("Start-Sleep -Seconds 30"))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await asyncio.wait_for(conn.run("$env:COMPUTERNAME"), 5)).ok


@pytest.mark.parametrize("scheme,auth", [("https", "basic"), ("https", "ntlm"), ("http", "ntlm")])
async def test_wrong_password_is_auth_error(https, http, pki, scheme: str, auth: str) -> None:
    endpoint = https[1] if scheme == "https" else http[1]
    extra = {"ca_file": pki.ca_cert} if scheme == "https" else {}
    conn = WinRMConnector(options(endpoint, password="wrong", scheme=scheme, auth=auth, **extra))
    with pytest.raises(AuthError) as caught:
        await conn.connect()
    assert not caught.value.retryable
    assert "wrong" not in str(caught.value)
    assert not conn.is_connected


async def test_nothing_listening_is_a_retryable_connect_error(pki: TLSFiles) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the connector tries it
    opts = ConnectOptions(
        host="lab-acme/hq/gone",
        address="127.0.0.1",
        port=port,
        username=USER,
        password=PASSWORD,
        connect_timeout=2.0,
        extra={"ca_file": str(pki.ca_cert)},
    )
    started = time.monotonic()
    with pytest.raises(ConnectError) as caught:
        await WinRMConnector(opts).connect()
    assert type(caught.value) is ConnectError and caught.value.retryable
    assert time.monotonic() - started < 3


async def test_silent_server_is_a_connect_error_after_the_read_timeout() -> None:
    """A host that accepts TCP and never answers: bounded by read_timeout, not a hang."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel accepts; nobody ever reads or replies
        opts = ConnectOptions(
            host="lab-acme/hq/frozen",
            address="127.0.0.1",
            port=listener.getsockname()[1],
            username=USER,
            password=PASSWORD,
            connect_timeout=2.0,
            extra={"scheme": "http", "operation_timeout": "1", "read_timeout": "2"},
        )
        started = time.monotonic()
        with pytest.raises(ConnectError) as caught:
            await WinRMConnector(opts).connect()
    assert "no reply" in str(caught.value) and caught.value.retryable
    assert time.monotonic() - started < 5


async def test_ipv6_address(pki: TLSFiles) -> None:
    """pywinrm's Session mangles https://[::1]:port/wsman; the connector builds the URL itself."""
    with running_endpoint(host="::1", tls=pki) as (_, endpoint):
        opts = ConnectOptions(
            host="lab-acme/hq/win6",
            address="::1",
            port=endpoint.port,
            username=USER,
            password=PASSWORD,
            connect_timeout=3.0,
            extra={"ca_file": str(pki.ca_cert)},
        )
        async with WinRMConnector(opts) as conn:
            assert (await conn.run("$env:COMPUTERNAME")).stdout == "WIN-LAB01\r\n"


async def test_lab_entry_point_serves_a_labelled_simulated_host(pki, tmp_path: Path) -> None:
    """`python -m mssp.lab.winrm_endpoint` is how the lab runs it: labelled, HTTPS, NTLM."""
    users = tmp_path / "users"
    users.write_text(f"{USER}:{PASSWORD}\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mssp.lab.winrm_endpoint",
        "--port",
        str(port),
        "--tls-dir",
        str(pki.cert.parent),
        "--users-file",
        str(users),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        banner = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert "simulated Windows host" in banner and f"https://127.0.0.1:{port}/wsman" in banner
        opts = ConnectOptions(
            host="lab-acme/hq/win02",
            address="127.0.0.1",
            port=port,
            username=USER,
            password=PASSWORD,
            connect_timeout=3.0,
            extra={"cert_sha256": pki.cert_sha256},
        )
        async with WinRMConnector(opts) as conn:
            assert (await conn.run_cmd("hostname")).stdout == "WIN-LAB01\r\n"
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0  # SIGTERM is a clean stop


async def test_untrusted_certificate_is_refused_before_any_request(https) -> None:
    """Bad certificate → HostKeyError (not retryable): the host's identity is unproven."""
    runner, endpoint = https
    seen = runner.do(lambda: endpoint.requests_seen)
    with pytest.raises(HostKeyError) as caught:
        await WinRMConnector(options(endpoint)).connect()  # system trust: the lab CA is unknown
    assert "not trusted" in str(caught.value) and not caught.value.retryable
    assert runner.do(lambda: endpoint.requests_seen) == seen  # no credential left the client


async def test_pinned_certificate(https, pki: TLSFiles) -> None:
    runner, endpoint = https
    pin = ":".join(pki.cert_sha256[i : i + 2] for i in range(0, 64, 2)).upper()
    async with WinRMConnector(options(endpoint, cert_sha256=pin, auth="basic")) as conn:
        assert (await conn.run("$env:COMPUTERNAME")).ok
    seen = runner.do(lambda: endpoint.requests_seen)
    with pytest.raises(HostKeyError) as caught:
        await WinRMConnector(options(endpoint, cert_sha256="ab" * 32, auth="basic")).connect()
    assert pki.cert_sha256 in str(caught.value)  # names what the host presented
    assert runner.do(lambda: endpoint.requests_seen) == seen


@pytest.mark.parametrize(
    "extra",
    [{"scheme": "http", "auth": "basic"}, {"scheme": "http", "message_encryption": "never"}],
)
async def test_basic_or_plaintext_over_http_is_refused_before_any_traffic(http, extra) -> None:
    runner, endpoint = http
    seen = runner.do(lambda: endpoint.requests_seen)
    with pytest.raises(InsecureTransportError) as caught:
        await WinRMConnector(options(endpoint, **extra)).connect()
    assert "HTTPS" in str(caught.value) and not caught.value.retryable
    assert runner.do(lambda: endpoint.requests_seen) == seen


async def test_bad_settings_are_config_errors(https) -> None:
    _, endpoint = https
    for extra in (
        {"auth": "kerberos"},
        {"cert_sha256": "xyz"},
        {"ca_file": "/nonexistent"},
        {"operation_timeout": "30", "read_timeout": "20"},
    ):
        with pytest.raises(ConfigError):
            await WinRMConnector(options(endpoint, **extra)).connect()


async def test_ntlm_over_http_encrypts_every_message(http) -> None:
    """A canary in a script and in its output never crosses the wire in the clear."""
    runner, endpoint = http
    start = runner.do(lambda: len(endpoint.wire))
    start_plain = runner.do(lambda: len(endpoint.plaintext))
    script = f"Write-Output '{CANARY}'"
    async with WinRMConnector(options(endpoint, scheme="http")) as conn:
        assert (await conn.run(script)).stdout == f"{CANARY}\r\n"
    bodies = [b for b in runner.do(lambda: endpoint.wire[start:]) if b]
    assert all(b.startswith(b"--Encrypted Boundary\r\n") for b in bodies)
    wire = b"".join(bodies)
    plain = b"".join(runner.do(lambda: endpoint.plaintext[start_plain:]))
    markers = [
        CANARY.encode(),
        encode_powershell(script)[1][-1].encode(),  # the script as sent (-EncodedCommand)
        base64.b64encode(f"{CANARY}\r\n".encode()),  # the output as returned
        PASSWORD.encode(),
    ]
    assert len(bodies) >= 6  # create, command, receive, signal, delete and their replies
    for marker in markers:
        assert marker not in wire
    assert markers[1] in plain and markers[2] in plain  # the capture did see those messages


async def test_stale_shell_after_a_reboot_is_replaced_once(https, pki: TLSFiles) -> None:
    runner, endpoint = https
    async with WinRMConnector(https_options(endpoint, pki)) as conn:
        assert (await conn.run("$env:COMPUTERNAME")).ok
        shells = runner.do(lambda: endpoint.shells_created)
        runner.do(endpoint.reboot)
        assert (await conn.run("$env:COMPUTERNAME")).stdout == "WIN-LAB01\r\n"
        assert runner.do(lambda: endpoint.shells_created) == shells + 1


async def test_dropped_connection_is_rebuilt(pki: TLSFiles) -> None:
    """NTLM-encrypted pywinrm stays broken after a drop unless the session is rebuilt."""
    with running_endpoint() as (runner, endpoint):
        port = endpoint.port
        conn = WinRMConnector(options(endpoint, scheme="http"))
        await conn.connect()
        assert (await conn.run("$env:COMPUTERNAME")).ok
        runner.call(endpoint.stop())
        with pytest.raises(ConnectError) as caught:
            await conn.run("$env:COMPUTERNAME")
        assert caught.value.retryable and not conn.is_connected
        revived = WinRMEndpoint("127.0.0.1", port, users={USER: PASSWORD})
        runner.call(revived.start())
        try:
            assert (await conn.run("$env:COMPUTERNAME")).stdout == "WIN-LAB01\r\n"
            assert conn.is_connected
        finally:
            await conn.close()
            runner.call(revived.stop())


async def test_put_and_get_file_verified_by_hash(https, pki: TLSFiles, tmp_path: Path) -> None:
    runner, endpoint = https
    payload = os.urandom(1_300_000)  # three transfer chunks
    local = tmp_path / "payload.bin"
    local.write_bytes(payload)
    remote = "C:\\Windows\\Temp\\payload.bin"
    async with WinRMConnector(https_options(endpoint, pki)) as conn:
        put = await conn.put_file(local, remote)
        assert put.sha256 == hashlib.sha256(payload).hexdigest() and put.size == len(payload)
        assert runner.do(lambda: endpoint.fs.read(remote)) == payload
        back = tmp_path / "back.bin"
        got = await conn.get_file(remote.upper(), back)  # Windows paths ignore case
    assert back.read_bytes() == payload and got.sha256 == put.sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back.bin", "payload.bin"]


async def test_corrupted_upload_is_detected(https, pki: TLSFiles, tmp_path: Path) -> None:
    runner, endpoint = https
    local = tmp_path / "config.xml"
    local.write_bytes(b"<config/>" * 100)
    runner.do(lambda: setattr(endpoint, "corrupt_writes", True))
    try:
        async with WinRMConnector(https_options(endpoint, pki)) as conn:
            with pytest.raises(TransferError, match="differs"):
                await conn.put_file(local, "C:\\Windows\\Temp\\config.xml")
    finally:
        runner.do(lambda: setattr(endpoint, "corrupt_writes", False))


async def test_transfer_errors_name_the_windows_reason(https, pki, tmp_path: Path) -> None:
    _, endpoint = https
    local = tmp_path / "x.txt"
    local.write_text("x")
    async with WinRMConnector(https_options(endpoint, pki)) as conn:
        with pytest.raises(TransferError, match="Could not find a part of the path"):
            await conn.put_file(local, "C:\\NoSuchDir\\x.txt")
        with pytest.raises(TransferError, match="Cannot find path"):
            await conn.get_file("C:\\Windows\\Temp\\missing.txt", tmp_path / "missing.txt")
        with pytest.raises(TransferError):
            await conn.put_file(tmp_path / "absent.txt", "C:\\Windows\\Temp\\absent.txt")
        await conn.put_file(local, "C:\\Windows\\Temp\\x.txt")
        with pytest.raises(TransferError, match="cannot write"):
            await conn.get_file("C:\\Windows\\Temp\\x.txt", tmp_path / "no-dir" / "x.txt")
    assert not (tmp_path / "missing.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]


async def test_become_is_refused_and_close_leaves_no_thread(https, pki) -> None:
    _, endpoint = https
    opts = ConnectOptions(**{**https_options(endpoint, pki).__dict__, "host": "lab/hq/closing"})
    conn = WinRMConnector(opts)
    await conn.connect()
    with pytest.raises(UsageError):
        await conn.run("$env:COMPUTERNAME", become=True)
    assert [t for t in threading.enumerate() if t.name.startswith("winrm lab/hq/closing")]
    await conn.close()
    await conn.close()
    with pytest.raises(ConnectError):
        await conn.run("$env:COMPUTERNAME")
    for _ in range(50):
        if not [t for t in threading.enumerate() if t.name.startswith("winrm lab/hq/closing")]:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the connection's worker thread outlived close()")


def test_recordings_hold_the_connector_transfer_scripts() -> None:
    """The simulated host recognises the connector's transfer scripts only if they are equal."""
    recorded = json.loads((RECORDINGS_DIR / "powershell.json").read_text())
    files = {e["script_file"]: e["simulate"] for e in recorded if "script_file" in e}
    for name, script in TRANSFER_SCRIPTS.items():
        path = f"../../connectors/winrm_ps/{name}.ps1"
        assert files[path] == name
        assert (RECORDINGS_DIR / path).read_text() == script


@pytest.mark.parametrize(
    "stderr,expected",
    [
        ("plain text\n", "plain text\n"),
        (
            '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/'
            '2004/04"><Obj S="progress" RefId="0"><TN RefId="0"><T>x</T></TN></Obj></Objs>',
            "",
        ),
        (
            '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/'
            '2004/04"><S S="Error">bad &lt;thing&gt;_x000D__x000A_</S>'
            '<S S="Error">lit _x005F_x000D_</S></Objs>',
            "bad <thing>\nlit _x000D_",
        ),
        ("#< CLIXML\r\n<Objs><S S=", "#< CLIXML\r\n<Objs><S S="),  # cut by the cap: kept raw
    ],
)
def test_clixml_stderr_is_decoded(stderr: str, expected: str) -> None:
    assert decode_clixml(stderr) == expected
