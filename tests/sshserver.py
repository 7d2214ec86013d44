"""A real in-process SSH server for unit tests: commands run as local subprocesses (bash -c).

Usage::

    async with ssh_test_server() as srv:
        srv.port, srv.host_key_public, srv.client_key, srv.username, srv.password

Everything is real: asyncssh's server on loopback, key exchange and authentication, commands
executed by ``bash -c`` with the client's stdin and environment (every ``env`` request is honoured,
like ``AcceptEnv *``), real exit codes and signals, an optional real PTY (``os.openpty``, resizes
applied with TIOCSWINSZ), and SFTP over the real filesystem (no chroot, so a path written by SFTP
is the same path a command sees: tests use tmp_path).

What tests can observe: ``auth_log`` (every authentication request, so "no credential was offered"
is provable), ``commands`` (every command line and the env it came with), ``handshakes`` (accepted
connections), ``open_connections``, ``max_concurrent_commands``. Knobs: ``tamper_sftp_writes`` /
``tamper_sftp_reads`` flip a byte on the server side of SFTP; ``auth_delay`` stalls every auth
request (login timeout tests); ``stop()`` / ``start()`` / ``restart()`` keep port(s) and host key.

One server can listen on many ports (``ports=N``) for fan-out tests; all ports share state.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import signal
import struct
import termios
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncssh

__all__ = [
    "AuthAttempt",
    "CommandRecord",
    "SSHTestServer",
    "generate_key",
    "public_openssh",
    "ssh_test_server",
]

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def generate_key(alg: str = "ssh-ed25519") -> asyncssh.SSHKey:
    """A fresh private key (ed25519 by default: fast to generate)."""
    return asyncssh.generate_private_key(alg)


def public_openssh(key: asyncssh.SSHKey) -> str:
    """'<algorithm> <base64>' one-line form of a key's public half (no comment)."""
    return " ".join(key.export_public_key("openssh").decode().split()[0:2])


@dataclass(frozen=True)
class AuthAttempt:
    """One authentication request the server received."""

    username: str
    method: str
    """'none' (begin of auth), 'password' or 'publickey'."""
    accepted: bool
    secret_offered: bool
    """True when the request carried a credential (a password, or a public key)."""


@dataclass(frozen=True)
class CommandRecord:
    """One exec/shell request the server ran."""

    command: str | None
    env: dict[str, str]
    term_type: str | None


@dataclass
class SSHTestServer:
    """State shared by every port of one test server. Create it through ``ssh_test_server``."""

    address: str
    host_key: asyncssh.SSHKey
    host_cert: asyncssh.SSHCertificate | None
    client_key_obj: asyncssh.SSHKey
    username: str
    password: str
    allow_pty: bool = True
    ports: list[int] = field(default_factory=list)
    auth_log: list[AuthAttempt] = field(default_factory=list)
    commands: list[CommandRecord] = field(default_factory=list)
    handshakes: int = 0
    open_connections: int = 0
    running_commands: int = 0
    max_concurrent_commands: int = 0
    auth_delay: float = 0.0
    tamper_sftp_writes: bool = False
    tamper_sftp_reads: bool = False
    extra_authorized_keys: list[asyncssh.SSHKey] = field(default_factory=list)
    ignore_signals: bool = False
    """Refuse signal requests, as OpenSSH does for root logins."""
    allow_forwarding: bool = False
    """Accept direct-tcpip channels (the server dials the target): lets it act as a tunnel."""
    forwards: list[tuple[str, int]] = field(default_factory=list)
    command_wrapper: Callable[[list[str]], list[str]] | None = None
    """Rewrites the argv of every command (e.g. to run it as another user in a namespace)."""
    _listeners: list[asyncssh.SSHAcceptor] = field(default_factory=list)
    _conns: set[asyncssh.SSHServerConnection] = field(default_factory=set)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    # ---- what tests read -------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def host_key_public(self) -> str:
        return public_openssh(self.host_key)

    @property
    def client_key(self) -> str:
        """The authorised client private key, OpenSSH text."""
        return self.client_key_obj.export_private_key("openssh").decode()

    @property
    def client_key_public(self) -> str:
        return public_openssh(self.client_key_obj)

    def credentials_offered(self) -> list[AuthAttempt]:
        """Auth requests that carried a password or a public key."""
        return [a for a in self.auth_log if a.secret_offered]

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self, count: int = 1) -> None:
        """Listen on the known ports again, or on ``count`` new ones the first time."""
        wanted = list(self.ports) or [0] * count
        self.ports = []
        keys: list[Any] = [(self.host_key, self.host_cert) if self.host_cert else self.host_key]
        for port in wanted:
            listener = await asyncssh.listen(
                self.address,
                port,
                server_factory=lambda: _Server(self),
                server_host_keys=keys,
                process_factory=self._process,
                sftp_factory=lambda chan: _TamperableSFTP(chan, self),
                encoding=None,
                line_editor=False,
                allow_scp=False,
                reuse_address=True,
            )
            self._listeners.append(listener)
            self.ports.append(listener.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening, drop every connection and kill every running command."""
        for listener in self._listeners:
            listener.close()
        for listener in self._listeners:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.wait_closed(), 5)
        self._listeners.clear()
        for conn in list(self._conns):
            conn.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        # let connection_lost callbacks run
        for _ in range(20):
            if not self._conns:
                break
            await asyncio.sleep(0.01)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    # ---- command execution -------------------------------------------------------------
    def _process(self, process: asyncssh.SSHServerProcess[bytes]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._run(process))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        command = process.command
        term = process.get_terminal_type()
        env = dict(process.env)
        self.commands.append(CommandRecord(command, env, term))
        full_env = {
            "PATH": BASE_PATH,
            "HOME": "/root" if os.getuid() == 0 else os.environ.get("HOME", "/"),
            "LANG": "C.UTF-8",
            "USER": self.username,
            "LOGNAME": self.username,
            **env,
        }
        argv = ["bash", "-c", command] if command is not None else ["bash", "--norc", "-i"]
        if term is not None:
            full_env["TERM"] = term
        if self.command_wrapper is not None:
            argv = self.command_wrapper(argv)
        self.running_commands += 1
        self.max_concurrent_commands = max(self.max_concurrent_commands, self.running_commands)
        try:
            if term is not None and self.allow_pty:
                status = await _run_pty(process, argv, full_env, self)
            else:
                status = await _run_pipes(process, argv, full_env, self)
            if status < 0:
                process.exit_with_signal(signal.Signals(-status).name[3:])
            else:
                process.exit(status)
        except (asyncssh.Error, OSError, asyncio.CancelledError):
            process.close()
        finally:
            self.running_commands -= 1


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5)


def _signal_number(name: str) -> int:
    return int(signal.Signals["SIG" + name.upper().removeprefix("SIG")])


async def _run_pipes(
    process: asyncssh.SSHServerProcess[bytes], argv: list[str], env: dict, state: SSHTestServer
) -> int:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    assert proc.stdin and proc.stdout and proc.stderr

    def deliver(name: str) -> None:
        if state.ignore_signals:
            return
        with contextlib.suppress(ProcessLookupError, KeyError):
            os.killpg(proc.pid, _signal_number(name))

    # Signals arrive on the session even after stdin's EOF, when nothing reads stdin any more.
    process.signal_received = deliver  # type: ignore[method-assign]

    async def feed() -> None:
        assert proc.stdin
        while True:
            try:
                data = await process.stdin.read(65536)
            except asyncssh.SignalReceived as exc:
                with contextlib.suppress(ProcessLookupError, KeyError):
                    os.killpg(proc.pid, _signal_number(exc.signal))
                continue
            except (asyncssh.TerminalSizeChanged, asyncssh.BreakReceived):
                continue
            if not data:
                break
            try:
                proc.stdin.write(data)
                await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                break
        with contextlib.suppress(Exception):
            proc.stdin.close()

    async def pump(source: asyncio.StreamReader, sink: asyncssh.SSHWriter[bytes]) -> None:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()

    feeder = asyncio.create_task(feed())
    try:
        await asyncio.gather(pump(proc.stdout, process.stdout), pump(proc.stderr, process.stderr))
        return await proc.wait()
    finally:
        feeder.cancel()
        with contextlib.suppress(BaseException):
            await feeder
        await _kill_group(proc)


def _set_winsize(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


async def _run_pty(
    process: asyncssh.SSHServerProcess[bytes], argv: list[str], env: dict, state: SSHTestServer
) -> int:
    master, slave = pty.openpty()
    cols, rows, _, _ = process.get_terminal_size()
    if cols and rows:
        _set_winsize(master, cols, rows)

    def controlling_tty() -> None:  # runs in the child between fork and exec
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            preexec_fn=controlling_tty,
        )
    finally:
        os.close(slave)
    loop = asyncio.get_running_loop()
    output: asyncio.Queue[bytes] = asyncio.Queue()

    def readable() -> None:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every slave end closed
            data = b""
        if not data:
            loop.remove_reader(master)
        output.put_nowait(data)

    loop.add_reader(master, readable)

    def deliver(name: str) -> None:
        if state.ignore_signals:
            return
        with contextlib.suppress(ProcessLookupError, KeyError):
            os.killpg(proc.pid, _signal_number(name))

    process.signal_received = deliver  # type: ignore[method-assign]

    async def feed() -> None:
        while True:
            try:
                data = await process.stdin.read(65536)
            except asyncssh.TerminalSizeChanged as exc:
                _set_winsize(master, exc.width, exc.height)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGWINCH)
                continue
            except asyncssh.SignalReceived as exc:
                with contextlib.suppress(ProcessLookupError, KeyError):
                    os.killpg(proc.pid, _signal_number(exc.signal))
                continue
            except asyncssh.BreakReceived:
                continue
            if not data:
                os.write(master, b"\x04")  # EOF on a terminal is ^D
                break
            os.write(master, data)

    feeder = asyncio.create_task(feed())
    try:
        while data := await output.get():
            process.stdout.write(data)
            await process.stdout.drain()
        return await proc.wait()
    finally:
        loop.remove_reader(master)
        feeder.cancel()
        with contextlib.suppress(BaseException):
            await feeder
        await _kill_group(proc)
        os.close(master)


class _Server(asyncssh.SSHServer):
    def __init__(self, state: SSHTestServer) -> None:
        self.state = state
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.state.handshakes += 1
        self.state.open_connections += 1
        self.state._conns.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.open_connections -= 1
        if self.conn is not None:
            self.state._conns.discard(self.conn)

    async def begin_auth(self, username: str) -> bool:
        self.state.auth_log.append(AuthAttempt(username, "none", False, False))
        return True

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        if self.state.auth_delay:
            await asyncio.sleep(self.state.auth_delay)
        ok = username == self.state.username and password == self.state.password
        self.state.auth_log.append(AuthAttempt(username, "password", ok, True))
        return ok

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if self.state.auth_delay:
            await asyncio.sleep(self.state.auth_delay)
        allowed = [self.state.client_key_obj, *self.state.extra_authorized_keys]
        offered = public_openssh(key)
        ok = username == self.state.username and any(public_openssh(k) == offered for k in allowed)
        self.state.auth_log.append(AuthAttempt(username, "publickey", ok, True))
        return ok

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> bool:
        self.state.forwards.append((dest_host, dest_port))
        return self.state.allow_forwarding


class _TamperableSFTP(asyncssh.SFTPServer):
    """The stock SFTP server over the real filesystem, able to corrupt data on request."""

    def __init__(self, chan: asyncssh.SSHServerChannel, state: SSHTestServer) -> None:
        super().__init__(chan)
        self.state = state

    def write(self, file_obj: object, offset: int, data: bytes) -> Any:
        if self.state.tamper_sftp_writes and offset == 0 and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return super().write(file_obj, offset, data)

    def read(self, file_obj: object, offset: int, size: int) -> Any:
        data = super().read(file_obj, offset, size)
        if self.state.tamper_sftp_reads and offset == 0 and isinstance(data, bytes) and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return data


def make_host_cert(
    ca_key: asyncssh.SSHKey, host_key: asyncssh.SSHKey, principals: list[str]
) -> asyncssh.SSHCertificate:
    """An OpenSSH host certificate for host_key signed by ca_key."""
    return ca_key.generate_host_certificate(host_key, "test-host", principals=principals)


@contextlib.asynccontextmanager
async def ssh_test_server(
    *,
    ports: int = 1,
    address: str = "127.0.0.1",
    host_key: asyncssh.SSHKey | None = None,
    host_ca: asyncssh.SSHKey | None = None,
    client_key: asyncssh.SSHKey | None = None,
    username: str = "mssp",
    password: str = "correct horse battery staple",
    allow_pty: bool = True,
    command_wrapper: Callable[[list[str]], list[str]] | None = None,
) -> AsyncIterator[SSHTestServer]:
    """Start a server on ``ports`` loopback ports; stop it (and every command) at exit.

    ``host_ca``: present a host certificate signed by this CA (principals: the address and
    ``localhost``) next to the plain host key.
    """
    key = host_key or generate_key()
    cert = make_host_cert(host_ca, key, [address, "localhost"]) if host_ca else None
    srv = SSHTestServer(
        address=address,
        host_key=key,
        host_cert=cert,
        client_key_obj=client_key or generate_key(),
        username=username,
        password=password,
        allow_pty=allow_pty,
        command_wrapper=command_wrapper,
    )
    await srv.start(ports)
    try:
        yield srv
    finally:
        await srv.stop()
