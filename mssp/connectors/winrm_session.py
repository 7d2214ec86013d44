"""The blocking half of the WinRM connector: one pywinrm Protocol and shell, commands, output cap.

Everything here runs on the one worker thread of its ``WinRMConnector`` (a pywinrm ``Protocol``
is not thread-safe). Errors leave this module already translated into ``mssp.errors`` by
winrm_errors.py, by exception type, never by message text.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter
from winrm.exceptions import (
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from mssp.connectors.winrm_errors import FAULT_SHELL_NOT_FOUND, map_error, pin_mismatch
from mssp.connectors.winrm_settings import WinRMSettings
from mssp.errors import MsspError

UTF8_CODEPAGE = 65001
STDIN_CHUNK = 48 * 1024  # bytes per Send envelope, well under WinRM's 150 KiB envelope limit


@dataclass(frozen=True)
class RawResult:
    """What one command produced, before decoding."""

    stdout: bytes
    stderr: bytes
    exit_code: int | None
    timed_out: bool
    dropped: int
    """Bytes counted and dropped beyond the cap (both streams)."""
    duration: float


class _CappedBuffer:
    """Keeps at most `cap` bytes and counts the rest (cap None: keep everything)."""

    def __init__(self, cap: int | None) -> None:
        self.cap, self.data, self.dropped = cap, bytearray(), 0

    def add(self, chunk: bytes) -> None:
        room = len(chunk) if self.cap is None else max(0, self.cap - len(self.data))
        self.data += chunk[:room]
        self.dropped += len(chunk) - min(room, len(chunk))


class _PinnedAdapter(HTTPAdapter):
    """Accepts exactly one server certificate, by its SHA-256 (urllib3's assert_fingerprint)."""

    def __init__(self, fingerprint: str) -> None:
        self._fingerprint = fingerprint
        super().__init__()

    def init_poolmanager(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        kwargs["assert_fingerprint"] = self._fingerprint
        super().init_poolmanager(*args, **kwargs)


def certificate_sha256(address: str, port: int, timeout: float) -> str:
    """The SHA-256 of the certificate a TLS server presents (no validation: used for pinning)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the pin is the identity check
    with (
        socket.create_connection((address, port), timeout=timeout) as sock,
        context.wrap_socket(sock, server_hostname=address) as tls,
    ):
        der = tls.getpeercert(binary_form=True) or b""
    return hashlib.sha256(der).hexdigest()


class WinRMSession:
    """One authenticated pywinrm Protocol and one open shell. Used by one thread at a time."""

    def __init__(self, settings: WinRMSettings) -> None:
        self.settings = settings
        self.protocol: Protocol | None = None
        self.shell_id: str | None = None

    @property
    def is_open(self) -> bool:
        return self.protocol is not None and self.shell_id is not None

    def open(self) -> None:
        """Authenticate and open the shell. Raises ConnectError, AuthError or HostKeyError."""
        s = self.settings
        try:
            if s.cert_sha256 is not None:
                seen = certificate_sha256(s.address, s.port, s.connect_timeout)
                if seen != s.cert_sha256:
                    raise pin_mismatch(s, seen)
            protocol = Protocol(
                endpoint=s.url,
                transport=s.auth,  # type: ignore[arg-type]
                username=s.username,
                password=s.password,
                server_cert_validation="ignore" if s.cert_sha256 else "validate",
                ca_trust_path=s.ca_file,  # type: ignore[arg-type]
                read_timeout_sec=s.read_timeout,
                operation_timeout_sec=s.operation_timeout,
                # over HTTP NTLM must seal every message; over HTTPS TLS protects them
                message_encryption="always" if s.scheme == "http" else "auto",
                proxy=None,  # never an environment proxy
            )
            # requests takes (connect, read): a dead address fails in connect_timeout seconds
            protocol.transport.read_timeout_sec = (s.connect_timeout, s.read_timeout)  # type: ignore[assignment]
            if s.cert_sha256 is not None:
                protocol.transport.build_session().mount("https://", _PinnedAdapter(s.cert_sha256))
            self.protocol = protocol
            self.shell_id = self._open_shell()
        except Exception as exc:
            self.drop()
            raise self.translate(exc) from exc

    def _open_shell(self, env: Mapping[str, str] | None = None) -> str:
        assert self.protocol is not None
        if self.protocol.transport.session is None:
            self.protocol.transport.build_session()  # NTLM over HTTP authenticates here
        return self.protocol.open_shell(
            env_vars=dict(env) if env else None, noprofile=True, codepage=UTF8_CODEPAGE
        )

    def close(self) -> None:
        """Delete the shell and close the HTTP session; errors here are not worth reporting."""
        if self.protocol is not None and self.shell_id is not None:
            with contextlib.suppress(Exception):
                self.protocol.close_shell(self.shell_id, close_session=False)
        self.drop()

    def drop(self) -> None:
        """Forget the connection; pywinrm's NTLM state stays broken until close_session()."""
        if self.protocol is not None:
            with contextlib.suppress(Exception):
                self.protocol.transport.close_session()
        self.protocol, self.shell_id = None, None

    def execute(
        self,
        command: str,
        arguments: list[str],
        *,
        stdin: bytes | Iterable[bytes] | None,
        env: Mapping[str, str] | None,
        deadline: float,
        cap: int | None,
        abort: threading.Event,
    ) -> RawResult:
        """Run one command until it exits, the deadline (time.monotonic) passes, or abort is set."""
        started = time.monotonic()
        try:
            if not self.is_open:
                self.open()
            assert self.protocol is not None and self.shell_id is not None
            if env:
                shell = self._open_shell(env)  # WinRS sets environment per shell, not per command
                try:
                    return self._run_in(shell, command, arguments, stdin, deadline, cap, abort)
                finally:
                    with contextlib.suppress(Exception):
                        self.protocol.close_shell(shell, close_session=False)
            try:
                command_id = self.protocol.run_command(self.shell_id, command, arguments)
            except WSManFaultError as exc:
                if exc.wsman_fault_code != FAULT_SHELL_NOT_FOUND:
                    raise
                self.shell_id = self._open_shell()  # the host restarted: one new shell, once
                command_id = self.protocol.run_command(self.shell_id, command, arguments)
            return self._collect(self.shell_id, command_id, stdin, deadline, cap, abort, started)
        except MsspError:
            raise
        except Exception as exc:
            raise self.translate(exc) from exc

    def _run_in(
        self,
        shell: str,
        command: str,
        arguments: list[str],
        stdin: bytes | Iterable[bytes] | None,
        deadline: float,
        cap: int | None,
        abort: threading.Event,
    ) -> RawResult:
        assert self.protocol is not None
        started = time.monotonic()
        command_id = self.protocol.run_command(shell, command, arguments)
        return self._collect(shell, command_id, stdin, deadline, cap, abort, started)

    def _collect(
        self,
        shell: str,
        command_id: str,
        stdin: bytes | Iterable[bytes] | None,
        deadline: float,
        cap: int | None,
        abort: threading.Event,
        started: float,
    ) -> RawResult:
        protocol = self.protocol
        assert protocol is not None
        out, err = _CappedBuffer(cap), _CappedBuffer(cap)
        exit_code: int | None = None
        timed_out = link_broken = False
        try:
            if stdin is not None:
                for piece in [stdin] if isinstance(stdin, bytes) else stdin:
                    for i in range(0, len(piece), STDIN_CHUNK):
                        chunk = piece[i : i + STDIN_CHUNK]
                        protocol.send_command_input(shell, command_id, chunk, end=False)
                protocol.send_command_input(shell, command_id, b"", end=True)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or abort.is_set():
                    timed_out = True
                    break
                # the service holds a Receive up to OperationTimeout: keep it within the deadline
                protocol.operation_timeout_sec = max(
                    1, min(self.settings.operation_timeout, int(remaining + 0.999))
                )
                try:
                    stdout, stderr, code, done = protocol.get_command_output_raw(shell, command_id)
                except WinRMOperationTimeoutError:
                    continue  # no output yet; our own deadline bounds this loop
                out.add(stdout)
                err.add(stderr)
                if done:
                    exit_code = code
                    break
        except (requests.RequestException, WinRMTransportError):
            link_broken = True  # nobody to tell: skip the cleanup below
            raise
        finally:
            protocol.operation_timeout_sec = self.settings.operation_timeout
            if not link_broken:
                with contextlib.suppress(
                    WinRMError, WinRMTransportError, requests.RequestException
                ):
                    protocol.cleanup_command(shell, command_id)  # frees (or stops) the command
        return RawResult(
            stdout=bytes(out.data),
            stderr=bytes(err.data),
            exit_code=exit_code,
            timed_out=timed_out,
            dropped=out.dropped + err.dropped,
            duration=time.monotonic() - started,
        )

    def translate(self, exc: BaseException) -> MsspError:
        """Map an error to mssp.errors; forget the connection (or the shell) it broke."""
        if isinstance(exc, WSManFaultError) and exc.wsman_fault_code == FAULT_SHELL_NOT_FOUND:
            self.shell_id = None  # reopened on the next command
        elif not isinstance(exc, (MsspError, WSManFaultError)):
            self.drop()
        return map_error(exc, self.settings)
