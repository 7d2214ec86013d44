"""SSHConnector against a real in-process asyncssh server whose commands really run (bash -c)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tracemalloc
from pathlib import Path

import asyncssh
import pytest

from mssp.connectors import sshexec
from mssp.connectors.base import HostKeyInfo
from mssp.connectors.ssh import SSHConnector
from mssp.connectors.ssherrors import map_error
from mssp.connectors.sshexec import wrap_command
from mssp.errors import (
    AuthError,
    CommandError,
    CommandTimeout,
    ConfigError,
    ConnectError,
    HostKeyError,
    ParameterError,
    TransferError,
)
from tests.connectors.conftest import ssh_options
from tests.sshserver import SSHTestServer, generate_key, public_openssh, ssh_test_server

MiB = 1024 * 1024


async def test_exit_status_stdout_and_stderr_are_real(ssh_server: SSHTestServer) -> None:
    async with SSHConnector(ssh_options(ssh_server)) as conn:
        result = await conn.run("echo out; echo err >&2; exit 7")
        assert (result.exit_status, result.stdout, result.stderr) == (7, "out\n", "err\n")
        assert not result.ok and not result.truncated
        ok = await conn.run("true")
        assert ok.ok and ok.command == "true"
        with pytest.raises(CommandError) as info:
            await conn.run("exit 3", check=True)
        assert info.value.result.exit_status == 3


async def test_killed_by_signal_has_no_exit_status(ssh_server: SSHTestServer) -> None:
    async with SSHConnector(ssh_options(ssh_server)) as conn:
        result = await conn.run("kill -9 $$")
        assert result.exit_status is None


async def test_stdin_reaches_the_command_intact(ssh_server: SSHTestServer) -> None:
    payload = os.urandom(3 * MiB)
    async with SSHConnector(ssh_options(ssh_server)) as conn:
        result = await conn.run("sha256sum", stdin=payload)
        assert result.stdout.split()[0] == hashlib.sha256(payload).hexdigest()
        text = await conn.run("cat", stdin="héllo\n")
        assert text.stdout == "héllo\n"


async def test_env_reaches_the_command_but_never_its_command_line(
    ssh_server: SSHTestServer,
) -> None:
    secret = "s3cr3t 'quoted' \"double\" $HOME `id`\nline2"
    async with SSHConnector(ssh_options(ssh_server)) as conn:
        result = await conn.run(
            'printf %s "$MSSP_TOKEN"; printf "|%s" "$OTHER"; cat',
            env={"MSSP_TOKEN": secret, "OTHER": "x"},
            stdin="after-env",
        )
    assert result.stdout == secret + "|x" + "after-env"
    assert all(secret not in (c.command or "") for c in ssh_server.commands)
    assert all("s3cr3t" not in (c.command or "") for c in ssh_server.commands)


async def test_bad_env_name_is_refused_before_anything_runs(ssh_server: SSHTestServer) -> None:
    async with SSHConnector(ssh_options(ssh_server)) as conn:
        with pytest.raises(ParameterError):
            await conn.run("true", env={"A;rm -rf /": "x"})
    assert ssh_server.commands == []


async def test_output_beyond_the_cap_is_counted_and_dropped(ssh_server: SSHTestServer) -> None:
    cap = 64 * 1024
    produced = 5 * MiB
    async with SSHConnector(ssh_options(ssh_server, output_cap=cap)) as conn:
        tracemalloc.start()
        try:
            result = await conn.run(f"head -c {produced} /dev/zero; head -c 100 /dev/zero >&2")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert len(result.stdout) == cap and result.stderr == "\0" * 100
    assert result.truncated and result.dropped_bytes == produced - cap
    # 5 MiB went through; far less than that was ever held (asyncssh's window is 2 MiB).
    assert peak < 2 * MiB, peak


async def test_output_is_decoded_as_utf8_with_replacement(ssh_server: SSHTestServer) -> None:
    async with SSHConnector(ssh_options(ssh_server)) as conn:
        result = await conn.run(r"printf 'caf\xc3\xa9 \xff end'")
    assert result.stdout == "café \ufffd end"


async def test_timeout_kills_the_remote_command(ssh_server: SSHTestServer, tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    async with SSHConnector(ssh_options(ssh_server)) as conn:
        with pytest.raises(CommandTimeout) as info:
            await conn.run(f"echo started; sleep 1.5; touch {marker}", timeout=0.3)
        assert info.value.result.stdout == "started\n"
        assert info.value.result.exit_status is None
        # the connection stays usable
        assert (await conn.run("echo still")).stdout == "still\n"
    await asyncio.sleep(2)
    assert not marker.exists()
    assert ssh_server.running_commands == 0


async def test_timeout_kills_even_when_the_server_ignores_signals(
    ssh_server: SSHTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OpenSSH refuses signal requests for root logins: the host-side deadline must still hold.
    monkeypatch.setattr(sshexec, "REMOTE_DEADLINE_MARGIN", 0)
    ssh_server.ignore_signals = True
    marker = tmp_path / "survived"
    async with SSHConnector(ssh_options(ssh_server)) as conn:
        with pytest.raises(CommandTimeout):
            await conn.run(f"sleep 2; touch {marker}", timeout=0.3)
    await asyncio.sleep(2.5)
    assert not marker.exists()


async def test_password_login(ssh_server: SSHTestServer) -> None:
    async with SSHConnector(ssh_options(ssh_server, key=False)) as conn:
        assert (await conn.run("echo pw")).stdout == "pw\n"
    assert [a.method for a in ssh_server.auth_log if a.accepted] == ["password"]


async def test_wrong_password_is_an_auth_error(ssh_server: SSHTestServer) -> None:
    options = ssh_options(ssh_server, key=False, password="wrong")
    with pytest.raises(AuthError) as info:
        await SSHConnector(options).connect()
    assert not info.value.retryable and "wrong" not in str(info.value)


async def test_unknown_client_key_is_an_auth_error(ssh_server: SSHTestServer) -> None:
    other = generate_key().export_private_key("openssh").decode()
    with pytest.raises(AuthError):
        await SSHConnector(ssh_options(ssh_server, private_key=other)).connect()


async def test_garbage_private_key_is_an_auth_error(ssh_server: SSHTestServer) -> None:
    with pytest.raises(AuthError):
        await SSHConnector(ssh_options(ssh_server, private_key="not a key")).connect()
    assert ssh_server.handshakes == 0


async def test_changed_host_key_sends_no_credential(ssh_server: SSHTestServer) -> None:
    stale_pin = public_openssh(generate_key())
    for key in (True, False):
        options = ssh_options(ssh_server, key=key, pinned_host_keys=(stale_pin,))
        with pytest.raises(HostKeyError) as info:
            await SSHConnector(options).connect()
        assert not info.value.retryable
        assert ssh_server.host_key.get_fingerprint("sha256") in str(info.value)
    assert ssh_server.handshakes == 2
    # The server's auth log proves it: not even the initial "none" request was made.
    assert ssh_server.auth_log == []


async def test_accept_new_pins_the_first_key(ssh_server: SSHTestServer) -> None:
    seen: list[HostKeyInfo] = []

    async def pin(info: HostKeyInfo) -> None:
        seen.append(info)

    options = ssh_options(ssh_server, pinned_host_keys=(), host_key_policy="accept-new")
    async with SSHConnector(options, on_new_host_key=pin) as conn:
        assert (await conn.run("echo hi")).ok
    assert [s.public_key for s in seen] == [ssh_server.host_key_public]
    assert seen[0].fingerprint == ssh_server.host_key.get_fingerprint("sha256")
    assert seen[0].algorithm == "ssh-ed25519"
    # pinned now: a known key is not "new" again
    seen.clear()
    pinned = ssh_options(ssh_server, pinned_host_keys=(seen_key := ssh_server.host_key_public,))
    async with SSHConnector(pinned, on_new_host_key=pin):
        pass
    assert seen == [] and seen_key


async def test_strict_refuses_an_unknown_key(ssh_server: SSHTestServer) -> None:
    options = ssh_options(ssh_server, pinned_host_keys=(), host_key_policy="strict")
    with pytest.raises(HostKeyError):
        await SSHConnector(options, on_new_host_key=lambda info: None).connect()
    assert ssh_server.auth_log == []


async def test_invalid_pin_or_policy_is_a_config_error(ssh_server: SSHTestServer) -> None:
    with pytest.raises(ConfigError):
        await SSHConnector(ssh_options(ssh_server, pinned_host_keys=("ssh-ed25519 zzz",))).connect()
    with pytest.raises(ConfigError):
        await SSHConnector(ssh_options(ssh_server, host_key_policy="yolo")).connect()
    assert ssh_server.handshakes == 0


async def test_ca_signed_host_certificate_is_accepted() -> None:
    ca = generate_key()
    async with ssh_test_server(host_ca=ca) as srv:
        for ca_line in (public_openssh(ca), f"@cert-authority * {public_openssh(ca)}"):
            options = ssh_options(
                srv, pinned_host_keys=(), trusted_ca_keys=(ca_line,), host_key_policy="strict"
            )
            async with SSHConnector(options) as conn:
                assert (await conn.run("echo cert")).stdout == "cert\n"
        # a certificate from another CA is not trusted, and strict refuses the bare key
        other = ssh_options(
            srv,
            pinned_host_keys=(),
            trusted_ca_keys=(public_openssh(generate_key()),),
            host_key_policy="strict",
        )
        before = len(srv.auth_log)
        with pytest.raises(HostKeyError, match=r"certificate was refused .*CA key is not trusted"):
            await SSHConnector(other).connect()
        assert len(srv.auth_log) == before


async def test_connect_refused_is_a_retryable_connect_error() -> None:
    async with ssh_test_server() as srv:
        options = ssh_options(srv)
    with pytest.raises(ConnectError) as info:
        await SSHConnector(options).connect()
    assert type(info.value) is ConnectError and info.value.retryable


async def test_login_timeout(ssh_server: SSHTestServer) -> None:
    ssh_server.auth_delay = 30
    started = asyncio.get_running_loop().time()
    with pytest.raises(ConnectError) as info:
        await SSHConnector(ssh_options(ssh_server, connect_timeout=0.5)).connect()
    assert info.value.retryable
    assert asyncio.get_running_loop().time() - started < 3


async def test_ciphers_prefer_aes_gcm_and_curve25519(ssh_server: SSHTestServer) -> None:
    async with SSHConnector(ssh_options(ssh_server)) as conn:
        raw = conn._conn
        assert raw is not None
        assert raw.get_extra_info("send_cipher") == "aes128-gcm@openssh.com"
        # what the client offered, in order (asyncssh appends its kex-strict/ext-info markers)
        offered = [alg.decode() for alg in raw._kex_algs]  # type: ignore[attr-defined]
        assert offered[:2] == ["curve25519-sha256", "curve25519-sha256@libssh.org"]
        assert not any("sntrup" in alg or "mlkem" in alg for alg in offered)


async def test_put_and_get_are_verified(ssh_server: SSHTestServer, tmp_path: Path) -> None:
    local = tmp_path / "local.bin"
    local.write_bytes(os.urandom(300_000))
    remote = str(tmp_path / "remote.bin")
    back = tmp_path / "back.bin"
    async with SSHConnector(ssh_options(ssh_server)) as conn:
        put = await conn.put_file(local, remote, mode=0o600)
        assert put.sha256 == hashlib.sha256(local.read_bytes()).hexdigest()
        assert put.size == 300_000
        assert Path(remote).read_bytes() == local.read_bytes()
        assert Path(remote).stat().st_mode & 0o777 == 0o600
        got = await conn.get_file(remote, back)
    assert back.read_bytes() == local.read_bytes() and got.sha256 == put.sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back.bin", "local.bin", "remote.bin"]


async def test_a_replaced_file_keeps_its_mode_and_owner(
    ssh_server: SSHTestServer, tmp_path: Path
) -> None:
    local = tmp_path / "new"
    local.write_bytes(b"new\n")
    target = tmp_path / "secret.conf"
    target.write_bytes(b"old\n")
    target.chmod(0o640)
    os.chown(target, 4343, 4343)
    async with SSHConnector(ssh_options(ssh_server)) as conn:
        await conn.put_file(local, str(target))
        with pytest.raises(TransferError, match="directory does not exist"):
            await conn.get_file(str(target), tmp_path / "missing-dir" / "x")
    stat = target.stat()
    assert target.read_bytes() == b"new\n"
    assert (stat.st_mode & 0o777, stat.st_uid, stat.st_gid) == (0o640, 4343, 4343)


async def test_tampered_upload_is_detected_and_target_untouched(
    ssh_server: SSHTestServer, tmp_path: Path
) -> None:
    local = tmp_path / "new.conf"
    local.write_bytes(b"new content\n")
    remote = tmp_path / "target.conf"
    remote.write_bytes(b"old content\n")
    ssh_server.tamper_sftp_writes = True
    async with SSHConnector(ssh_options(ssh_server)) as conn:
        with pytest.raises(TransferError, match="differs"):
            await conn.put_file(local, str(remote))
    assert remote.read_bytes() == b"old content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.conf", "target.conf"]


async def test_tampered_download_is_detected_and_nothing_written(
    ssh_server: SSHTestServer, tmp_path: Path
) -> None:
    remote = tmp_path / "remote.txt"
    remote.write_bytes(b"payload" * 1000)
    ssh_server.tamper_sftp_reads = True
    async with SSHConnector(ssh_options(ssh_server)) as conn:
        with pytest.raises(TransferError, match="differs"):
            await conn.get_file(str(remote), tmp_path / "copy.txt")
        with pytest.raises(TransferError):
            await conn.get_file(str(tmp_path / "missing"), tmp_path / "copy.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["remote.txt"]


async def test_pty_session_is_interactive_and_resizable(ssh_server: SSHTestServer) -> None:
    async with SSHConnector(ssh_options(ssh_server)) as conn:
        pty = await conn.open_pty("xterm", cols=100, rows=30, command="bash --norc --noprofile")

        async def read_until(text: bytes) -> bytes:
            seen = b""
            while text not in seen:
                chunk = await asyncio.wait_for(pty.read(), 5)
                assert chunk, seen
                seen += chunk
            return seen

        pty.write(b"tty; stty size\n")
        assert b"30 100" in await read_until(b"30 100")
        pty.resize(120, 40)
        await asyncio.sleep(0.1)
        pty.write(b"stty size; exit 4\n")
        await read_until(b"40 120")
        assert await pty.wait(timeout=5) == 4
        pty.close()
    assert ssh_server.commands[-1].term_type == "xterm"


async def test_closed_connection_is_noticed(ssh_server: SSHTestServer) -> None:
    conn = SSHConnector(ssh_options(ssh_server))
    await conn.connect()
    assert conn.is_connected
    await ssh_server.restart()
    await asyncio.sleep(0.1)
    assert not conn.is_connected
    with pytest.raises(ConnectError):
        await conn.run("true")
    await conn.close()
    await conn.close()  # idempotent


def test_become_command_carries_no_secret() -> None:
    wrapped = wrap_command("apt-get update", env={"K": "v"}, become=True, username="admin")
    assert wrapped.remote_command.startswith("sudo -S -p ")
    assert wrapped.prompt and wrapped.marker
    assert wrapped.preamble == b"export K=v\n"
    assert "v\n" not in wrapped.remote_command
    again = wrap_command("apt-get update", env=None, become=True, username="admin")
    assert again.prompt != wrapped.prompt  # the prompt is random: output cannot forge it
    assert wrap_command("id", env=None, become=True, username="root").remote_command == "id"


async def test_become_without_a_password_prompt_keeps_stdin_intact(
    ssh_server: SSHTestServer,
) -> None:
    # The test server runs commands as root, so real sudo asks nothing: a password written
    # blindly would end up in the command's stdin. It must not.
    options = ssh_options(ssh_server, become_password="hunter2-become")
    async with SSHConnector(options) as conn:
        result = await conn.run("id -u; cat", become=True, stdin="only-this\n", env={"E": "1"})
    assert result.exit_status == 0, result
    assert result.stdout == "0\nonly-this\n"
    assert all("hunter2" not in (c.command or "") for c in ssh_server.commands)


async def test_a_connection_lost_mid_command_is_a_connect_error(ssh_server: SSHTestServer) -> None:
    async with SSHConnector(ssh_options(ssh_server)) as conn:
        running = asyncio.create_task(conn.run("echo begun; sleep 10", timeout=20))
        await asyncio.sleep(0.3)
        await ssh_server.stop()
        with pytest.raises(ConnectError) as info:
            await asyncio.wait_for(running, 5)
        assert info.value.retryable and not conn.is_connected


class FreezableProxy:
    """A loopback TCP proxy that can stop forwarding (a frozen link, not a closed one)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                if self.frozen.is_set():
                    await asyncio.Event().wait()  # swallow everything from now on
                dst.write(data)
                await dst.drain()

        for coro in (pipe(reader, up_writer), pipe(up_reader, writer)):
            task = asyncio.create_task(coro)
            self.tasks.add(task)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def test_keepalive_notices_a_frozen_link(ssh_server: SSHTestServer) -> None:
    proxy = FreezableProxy(ssh_server.port)
    port = await proxy.start()
    try:
        options = ssh_options(ssh_server, port=port, keepalive_interval=0.2)
        async with SSHConnector(options) as conn:
            assert (await conn.run("echo up")).ok
            proxy.frozen.set()
            started = asyncio.get_running_loop().time()
            with pytest.raises(ConnectError):
                await conn.run("sleep 30", timeout=30)
            # 3 unanswered keep-alives at 0.2 s: noticed in about a second, not 30
            assert asyncio.get_running_loop().time() - started < 3
            assert not conn.is_connected
    finally:
        await proxy.close()


@pytest.mark.parametrize(
    ("exc", "expected", "retryable"),
    [
        (asyncssh.HostKeyNotVerifiable("x"), HostKeyError, False),
        (asyncssh.PermissionDenied("x"), AuthError, False),
        (asyncssh.ConnectionLost("x"), ConnectError, True),
        (asyncssh.ProtocolError("x"), ConnectError, True),
        (asyncssh.KeyExchangeFailed("x"), ConnectError, False),
        (asyncssh.ChannelOpenError(2, "administratively prohibited"), ConnectError, True),
        (ConnectionRefusedError(111, "Connection refused"), ConnectError, True),
        (TimeoutError(), ConnectError, True),
    ],
)
def test_errors_are_mapped_by_type(exc: BaseException, expected: type, retryable: bool) -> None:
    mapped = map_error(exc, "acme/hq/h1", during="connect")
    assert type(mapped) is expected and mapped.retryable is retryable
    assert mapped.host == "acme/hq/h1" and str(mapped).startswith("acme/hq/h1: ")
