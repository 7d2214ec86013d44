"""Run hand-off: `mssp exec` and `mssp run` give their run to a running `mssp daemon`.

The daemon already holds what a one-shot command pays for on every start: the imports (the ORM,
asyncssh: ~0.3 s), the unlocked vault (Argon2id: ~0.2 s), the open database and, for repeat runs,
the connection pool. The command becomes a thin client: it sends one request over a Unix socket
and shows the run's events and summary exactly as it would have shown its own run.

Protocol (newline-delimited JSON, one run per connection):
  client → daemon  {"v": 1, "op": "run", "task", "target", "params", "options", "jsonl", "db"}
  daemon → client  {"type": "started", "run_id"} | {"type": "declined", "reason"}
                   | {"type": "error", "error", "message"}
                   then {"type": "event", "event": {...}} ..., {"type": "host", "host"} per host,
                   and {"type": "summary", "summary"} (the run, without its hosts)
  client → daemon  {"op": "cancel", "immediate": bool}   (Ctrl-C once / twice)
A client that goes away before the summary cancels its run at once (like SIGHUP on a local run):
a run nobody watches does not go on changing a fleet.

Who may connect: only the daemon's own user. The socket is created mode 0600 and every peer's
credentials (SO_PEERCRED) are checked, because whoever can talk to the daemon can run commands on
every host with the vault's credentials (the ssh-agent model: the socket is as strong as the
user's account). "declined" means: run it yourself (another database, a limit the daemon's
connection pool cannot honour, another protocol version); the client then runs locally.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mssp import errors
from mssp.config import Settings
from mssp.events import to_json as event_json

log = logging.getLogger(__name__)

VERSION = 1
MAX_LINE = 1 << 20
"""Longest request line (bytes); a run's parameters are small."""
MAX_MESSAGE = 64 << 20
"""Longest line the client reads: one host's result (two capped, escaped outputs) or event."""
REQUEST_TIMEOUT = 10.0
"""Seconds a connected client has to send its request."""
CLOSE_GRACE = 5.0
"""Seconds hand-off clients get to receive their summaries when the daemon stops."""
_SUN_PATH_MAX = 100


class Declined(Exception):
    """The daemon will not take this run; the client runs it itself."""


def socket_path(settings: Settings) -> Path:
    """Where the daemon of this home listens: the data folder, or (a path too long for a Unix
    socket) a per-user folder in the runtime directory named after the data folder."""
    path = settings.data_dir / "daemon.sock"
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        return path
    digest = hashlib.sha256(os.fsencode(settings.data_dir.resolve())).hexdigest()[:16]
    # A shared temporary folder is used only through _private_dir (ours, mode 0700).
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"mssp-{os.geteuid()}"
    return base / f"mssp-{digest}.sock"


def _private_dir(path: Path) -> None:
    """Create ``path`` mode 0700, or check that an existing one is ours and private."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise errors.ConfigError(f"{path} must be a folder only this user can open (mode 0700)")


def database_fingerprint(settings: Settings) -> str:
    """Names the database without revealing its URL (which may hold a password)."""
    return hashlib.sha256(settings.effective_database_url.encode()).hexdigest()[:16]


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """One message; ValueError when it is not a JSON object with a string ``type`` or ``op``."""
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("a message must be a JSON object")
    return data


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def error_message(exc: errors.MsspError) -> dict[str, Any]:
    return {"type": "error", "error": type(exc).__name__, "message": exc.message}


def error_from(message: dict[str, Any]) -> errors.MsspError:
    """The MsspError a daemon reported, as the same class (exit code) on this side."""
    kind = getattr(errors, str(message.get("error", "")), None)
    if not (isinstance(kind, type) and issubclass(kind, errors.MsspError)):
        kind = errors.MsspError
    return kind(str(message.get("message", "")))


@dataclass(frozen=True)
class RunRequest:
    task: str
    target: str
    params: dict[str, Any]
    options: Any
    """RunOptions"""
    jsonl: bool


def parse_request(data: dict[str, Any], settings: Settings, fingerprint: str) -> RunRequest:
    """Validate a request: Declined (run it yourself) or UsageError (bad input), never a guess."""
    from mssp.engine.options import RunOptions

    if data.get("v") != VERSION:
        raise Declined(f"protocol version {data.get('v')!r}, this daemon speaks {VERSION}")
    if data.get("db") != fingerprint:
        raise Declined("the command uses another database than this daemon")
    if data.get("op") != "run":
        raise errors.UsageError(f"unknown operation {data.get('op')!r}")
    task, target, params = data.get("task"), data.get("target"), data.get("params")
    options = data.get("options")
    if not isinstance(task, str) or not isinstance(target, str) or not task or not target:
        raise errors.UsageError("a run needs a task and a target")
    if not isinstance(params, dict) or not isinstance(options, dict):
        raise errors.UsageError("params and options must be objects")
    try:
        run_options = RunOptions.from_json(options)
    except TypeError as exc:
        raise errors.UsageError(f"bad run options: {exc}") from None
    if (run_options.forks or 0) > settings.forks:
        raise Declined(f"-f {run_options.forks} is above the daemon's forks ({settings.forks})")
    if (run_options.per_client or 0) > settings.per_client_limit:
        raise Declined(
            f"--per-client {run_options.per_client} is above the daemon's per_client_limit "
            f"({settings.per_client_limit})"
        )
    return RunRequest(task, target, params, run_options, bool(data.get("jsonl")))


class HandoffServer:
    """Listens on the home's socket and runs what same-user clients send, in ``engine``."""

    def __init__(self, engine: Any, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.path = socket_path(settings)
        self.fingerprint = database_fingerprint(settings)
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[Any]] = set()
        self._inode: int | None = None

    async def start(self) -> None:
        """Listen; ConfigError if another daemon already serves this home."""
        if self.path.parent != self.settings.data_dir:
            _private_dir(self.path.parent)
        if self.path.exists() or self.path.is_symlink():
            try:
                _, writer = await asyncio.open_unix_connection(str(self.path))
            except OSError:
                self.path.unlink()  # left by a daemon that died
            else:
                writer.close()
                raise errors.ConfigError(f"another mssp daemon already listens on {self.path}")
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._accept, path=str(self.path), limit=MAX_LINE
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self._inode = self.path.stat().st_ino
        log.info("run hand-off listening on %s", self.path)

    def stop_listening(self) -> None:
        """No new runs (the daemon is stopping); runs already handed over go on."""
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(OSError):
            if self._inode is not None and self.path.stat().st_ino == self._inode:
                self.path.unlink()
        self._inode = None

    async def aclose(self) -> None:
        """Stop listening; give connected clients CLOSE_GRACE to get their summaries; end."""
        self.stop_listening()
        if self._clients:
            await asyncio.wait(set(self._clients), timeout=CLOSE_GRACE)
        for task in list(self._clients):
            task.cancel()
        for task in list(self._clients):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._server = None

    # ---- one client -----------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("run hand-off: a client's request failed")
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        uid = peer_uid(writer.get_extra_info("socket"))
        try:
            # read the request first in every case, so the client always gets the answer
            async with asyncio.timeout(REQUEST_TIMEOUT):  # not wait_for: 3.11 can lose a cancel
                line = await reader.readline()
            if uid != os.geteuid():  # checked before a byte of the request is looked at
                log.warning("run hand-off: refused a client of uid %d", uid)
                raise Declined("not this daemon's user")
            request = parse_request(decode(line), self.settings, self.fingerprint)
        except (TimeoutError, ValueError) as exc:  # ValueError: bad JSON or a line too long
            writer.write(encode(error_message(errors.UsageError(f"bad request: {exc}"))))
            return
        except Declined as exc:
            writer.write(encode({"type": "declined", "reason": str(exc)}))
            return
        except errors.MsspError as exc:
            writer.write(encode(error_message(exc)))
            return
        await self._run(request, reader, writer)

    async def _run(
        self, request: RunRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        engine = self.engine
        async with engine.bus.subscribe(lossless=request.jsonl) as queue:
            try:
                run_id = await engine.start_run(
                    request.task, request.target, params=request.params, options=request.options
                )
            except errors.MsspError as exc:
                writer.write(encode(error_message(exc)))
                return
            writer.write(encode({"type": "started", "run_id": run_id}))
            control = asyncio.create_task(self._control(reader, run_id))
            pump = asyncio.create_task(self._pump(queue, run_id, writer))
            try:
                summary = await engine.wait(run_id)
            finally:
                control.cancel()
                pump.cancel()
                for task in (control, pump):
                    with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                        await task
            while not queue.empty():
                self._send_event(queue.get_nowait(), run_id, writer)
            # one line per host, then the run: a fleet's capped outputs (1 MiB per stream per
            # host) would make a single line of hundreds of MiB
            document = summary.to_json()
            for host in document.pop("hosts"):
                writer.write(encode({"type": "host", "host": host}))
                await writer.drain()
            writer.write(encode({"type": "summary", "summary": document}))
            await writer.drain()

    async def _control(self, reader: asyncio.StreamReader, run_id: int) -> None:
        """Cancels the client asks for; its going away cancels the run at once."""
        while True:
            try:
                line = await reader.readline()
            except (ConnectionError, ValueError):
                line = b""
            if not line:
                log.info("run hand-off: the client of run %s left; cancelling it", run_id)
                await self.engine.cancel(run_id, immediate=True)
                return
            try:
                message = decode(line)
            except ValueError:
                continue
            if message.get("op") == "cancel":
                await self.engine.cancel(run_id, immediate=bool(message.get("immediate")))

    async def _pump(self, queue: asyncio.Queue[Any], run_id: int, writer: Any) -> None:
        while True:
            self._send_event(await queue.get(), run_id, writer)
            await writer.drain()

    @staticmethod
    def _send_event(event: Any, run_id: int, writer: Any) -> None:
        if getattr(event, "run_id", None) == run_id:
            writer.write(encode({"type": "event", "event": event_json(event)}))
