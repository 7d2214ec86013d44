"""WinRM connector: pywinrm in a worker thread, PowerShell by encoded command, verified transfers.

One ``WinRMConnector`` owns one pywinrm ``Protocol``, one long-lived shell (see
winrm_session.py) and one worker thread; commands are serialised on them. Settings come from
``ConnectOptions.extra``:

- ``scheme``: ``https`` (default) or ``http``; ``auth``: ``ntlm`` (default) or ``basic``;
  ``message_encryption``: ``auto`` (default), ``always``, ``never``.
  Basic or unencrypted traffic over HTTP is refused with ``InsecureTransportError`` before any
  byte is sent; NTLM over HTTP always seals every message.
- ``ca_file``: PEM bundle used to validate the HTTPS certificate (default: requests' bundle;
  never REQUESTS_CA_BUNDLE or proxies from the environment), or
  ``cert_sha256``: the certificate's SHA-256, pinned instead of CA validation. An untrusted or
  mismatching certificate raises ``HostKeyError`` (never retried) before credentials are sent.
- ``operation_timeout`` (20 s), ``read_timeout`` (operation + 10 s), ``command_timeout`` (the
  deadline of a run without an explicit timeout, default the constructor's ``command_timeout``:
  pywinrm alone would wait forever).

``run()`` runs its text as a PowerShell script; ``run_cmd()`` runs a cmd.exe command line.
Environment variables go into a short-lived shell's WinRS environment, never into a command line.
The tests exercise this against the lab's simulated Windows host: Windows behaviour there comes
from recordings, not from a real Windows machine.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from mssp.connectors.base import CommandResult, ConnectOptions, Connector, TransferResult
from mssp.connectors.winrm_scripts import (
    FILE_INFO_SCRIPT,
    PUT_FILE_SCRIPT,
    READ_CHUNK_SCRIPT,
    decode_clixml,
    encode_powershell,
)
from mssp.connectors.winrm_session import RawResult, WinRMSession
from mssp.connectors.winrm_settings import WinRMSettings
from mssp.errors import CommandTimeout, ConnectError, TransferError, UsageError

T = TypeVar("T")


class _Default(enum.Enum):
    OUTPUT_CAP = "the connection's output cap"


TRANSFER_CHUNK = 512 * 1024  # raw bytes per read command (get_file)
UPLOAD_LINE = 48 * 1024  # raw bytes per base64 stdin line (put_file)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class WinRMConnector(Connector):
    """One WinRM connection to one Windows host (see the module docstring for options)."""

    transport = "winrm"

    def __init__(self, options: ConnectOptions, *, command_timeout: float = 3600.0) -> None:
        self.options = options
        self._command_timeout = command_timeout
        self._session: WinRMSession | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        # One thread per connection: the Protocol never meets another thread, and a fleet of
        # slow Windows commands cannot starve asyncio's shared default executor.
        self._worker: ThreadPoolExecutor | None = None
        self._running: threading.Event | None = None  # abort flag of the command in progress

    @property
    def is_connected(self) -> bool:
        return not self._closed and self._session is not None and self._session.is_open

    async def connect(self) -> None:
        settings = WinRMSettings.from_options(
            self.options, command_timeout=self._command_timeout
        )  # refuses insecure settings first
        async with self._lock:
            self._closed = False
            session = WinRMSession(settings)
            await self._in_thread(session, session.open, bound=_open_bound(settings))
            self._session = session

    async def close(self) -> None:
        self._closed = True
        if self._running is not None:
            self._running.set()  # stop a command in progress instead of waiting for its end
        async with self._lock:
            session, self._session = self._session, None
            try:
                if session is not None:
                    bound = session.settings.read_timeout
                    await self._in_thread(session, session.close, bound=bound)
            finally:
                worker, self._worker = self._worker, None
                if worker is not None:
                    worker.shutdown(wait=False)  # idle by now: its thread exits at once

    async def run(
        self,
        command: str,
        *,
        check: bool = False,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        become: bool = False,
    ) -> CommandResult:
        """Run `command` as a PowerShell script (powershell.exe -EncodedCommand)."""
        if become:
            raise UsageError(
                "privilege escalation does not exist on WinRM; connect with an administrative "
                "account instead"
            )
        exe, args = encode_powershell(command)
        return await self._execute(
            command, exe, args, check=check, timeout=timeout, stdin=stdin, env=env
        )

    async def run_cmd(
        self,
        command_line: str,
        *,
        check: bool = False,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run a cmd.exe command line as WinRS does (no PowerShell)."""
        return await self._execute(
            command_line,
            command_line,
            [],
            check=check,
            timeout=timeout,
            stdin=stdin,
            env=env,
            powershell=False,
        )

    async def put_file(
        self, local: Path, remote: str, *, mode: int | None = None
    ) -> TransferResult:
        """Upload as base64 lines through stdin; verified by Get-FileHash on the host.

        The file is read in the worker thread as it is sent, never held whole in memory.
        `mode` has no meaning on Windows (ACLs are not modes) and is ignored.
        """
        started = time.monotonic()
        try:
            await asyncio.to_thread(local.stat)
        except OSError as exc:
            raise TransferError(f"cannot read {local}: {exc.strerror}") from exc
        upload = _Upload(local, remote)
        exe, args = encode_powershell(PUT_FILE_SCRIPT)
        result = await self._execute(PUT_FILE_SCRIPT, exe, args, stdin=upload)
        far = _transfer_reply(result, remote)
        local_hash = upload.digest.hexdigest()
        if far.sha256 != local_hash or far.size != upload.size:
            raise TransferError(
                f"{remote}: SHA-256 on the host {far.sha256} differs from the local "
                f"{local_hash} (size {far.size} vs {upload.size})"
            )
        return TransferResult(local, remote, upload.size, local_hash, time.monotonic() - started)

    async def get_file(self, remote: str, local: Path) -> TransferResult:
        """Download in chunks read by PowerShell; verified against Get-FileHash on the host.

        Bytes land in a hidden partial file beside `local`, renamed only once the hash matches.
        """
        started = time.monotonic()
        info = _transfer_reply(
            await self.run(FILE_INFO_SCRIPT, stdin=json.dumps({"path": remote})), remote
        )
        size, digest = info.size, hashlib.sha256()
        partial = local.with_name(f".{local.name}.partial-{os.getpid()}")
        try:
            try:
                handle = await asyncio.to_thread(partial.open, "wb")
            except OSError as exc:
                raise TransferError(f"cannot write {local}: {exc.strerror}") from exc
            try:
                for offset in range(0, size, TRANSFER_CHUNK):
                    request = json.dumps(
                        {"path": remote, "offset": offset, "length": TRANSFER_CHUNK}
                    )
                    exe, args = encode_powershell(READ_CHUNK_SCRIPT)
                    # a chunk is bounded by TRANSFER_CHUNK, not by the output cap
                    result = await self._execute(
                        READ_CHUNK_SCRIPT, exe, args, stdin=request, cap=None
                    )
                    if result.exit_status != 0:
                        raise TransferError(f"{remote}: {result.stderr.strip() or 'read failed'}")
                    chunk = base64.b64decode(result.stdout)
                    digest.update(chunk)
                    await asyncio.to_thread(handle.write, chunk)
            finally:
                await asyncio.to_thread(handle.close)
            if digest.hexdigest() != info.sha256:
                raise TransferError(
                    f"{remote}: SHA-256 of the received bytes {digest.hexdigest()} differs from "
                    f"Get-FileHash on the host {info.sha256}"
                )
            await asyncio.to_thread(partial.replace, local)
        except BaseException:
            await asyncio.to_thread(partial.unlink, missing_ok=True)
            raise
        return TransferResult(local, remote, size, digest.hexdigest(), time.monotonic() - started)

    async def _execute(
        self,
        display: str,
        exe: str,
        args: list[str],
        *,
        check: bool = False,
        timeout: float | None = None,
        stdin: str | bytes | Iterable[bytes] | None = None,
        env: Mapping[str, str] | None = None,
        powershell: bool = True,
        cap: int | _Default | None = _Default.OUTPUT_CAP,
    ) -> CommandResult:
        for name in env or {}:
            if not _ENV_NAME.fullmatch(name):
                raise UsageError(f"invalid environment variable name {name!r}")
        data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
        limit_bytes = self.options.output_cap if cap is _Default.OUTPUT_CAP else cap
        async with self._lock:
            if self._closed:
                raise ConnectError("connection closed", host=self.options.host)
            if self._session is None:  # abandoned after a hang: start over with a new one
                self._session = WinRMSession(
                    WinRMSettings.from_options(self.options, command_timeout=self._command_timeout)
                )
            session = self._session
            limit = timeout if timeout is not None else session.settings.command_timeout
            abort = self._running = threading.Event()
            raw: RawResult = await self._in_thread(
                session,
                lambda: session.execute(
                    exe,
                    args,
                    stdin=data,
                    env=env,
                    deadline=time.monotonic() + limit,
                    cap=limit_bytes,
                    abort=abort,
                ),
                bound=limit + _open_bound(session.settings),
                abort=abort,
            )
            self._running = None
        stderr = raw.stderr.decode("utf-8", "replace")
        result = CommandResult(
            command=display,
            exit_status=None if raw.timed_out else raw.exit_code,
            stdout=raw.stdout.decode("utf-8", "replace"),
            stderr=decode_clixml(stderr) if powershell else stderr,
            duration=raw.duration,
            truncated=raw.dropped > 0,
            dropped_bytes=raw.dropped,
        )
        if raw.timed_out and self._closed:
            raise ConnectError("connection closed during the command", host=self.options.host)
        if raw.timed_out:
            raise CommandTimeout(
                f"{self.options.host}: command did not finish within {limit:g}s", result=result
            )
        return result.check() if check else result

    async def _in_thread(
        self,
        session: WinRMSession,
        func: Callable[[], T],
        *,
        bound: float,
        abort: threading.Event | None = None,
    ) -> T:
        """Run blocking pywinrm work on this connection's thread; on cancel or a hang, stop it."""
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"winrm {self.options.host}")
        worker = self._worker
        task = asyncio.get_running_loop().run_in_executor(worker, func)
        try:
            return await asyncio.wait_for(asyncio.shield(task), bound)
        except TimeoutError as exc:
            # The thread is stuck past every pywinrm timeout: abandon it and this session.
            if abort is not None:
                abort.set()
            if self._session is session:
                self._session = None
            if self._worker is worker:
                self._worker = None
                worker.shutdown(wait=False)
            raise ConnectError(
                "the WinRM service stopped answering", host=self.options.host
            ) from exc
        except asyncio.CancelledError:
            if abort is not None:
                abort.set()  # the loop stops after the current Receive and signals the command
            await asyncio.wait([task], timeout=bound)
            raise


def _open_bound(settings: WinRMSettings) -> float:
    """Longest a connect (TLS, NTLM handshake, shell) can take before it counts as a hang."""
    return settings.connect_timeout + 3 * settings.read_timeout


@dataclass(frozen=True)
class _FarFile:
    """What the transfer scripts report about the file on the host."""

    sha256: str
    size: int


def _transfer_reply(result: CommandResult, remote: str) -> _FarFile:
    if result.exit_status != 0:
        raise TransferError(f"{remote}: {result.stderr.strip() or 'the host refused the transfer'}")
    try:
        reply = json.loads(result.stdout)
        return _FarFile(sha256=str(reply["sha256"]).lower(), size=int(reply["size"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise TransferError(f"{remote}: unexpected reply from the transfer script") from exc


class _Upload:
    """put_file's stdin, read in the worker thread: a JSON header line, then base64 lines."""

    def __init__(self, local: Path, remote: str) -> None:
        self.local, self.remote = local, remote
        self.digest = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        yield json.dumps({"path": self.remote}).encode() + b"\n"
        try:
            with self.local.open("rb") as handle:
                while chunk := handle.read(UPLOAD_LINE):
                    self.digest.update(chunk)
                    self.size += len(chunk)
                    yield base64.b64encode(chunk) + b"\n"
        except OSError as exc:
            raise TransferError(f"cannot read {self.local}: {exc.strerror}") from exc
