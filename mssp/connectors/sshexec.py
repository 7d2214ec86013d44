"""Running one command over an SSH connection: capped output, env and sudo through stdin, timeouts.

Secrets never reach a remote command line:
- ``env`` travels as an ``export`` preamble on stdin that a tiny POSIX ``sh`` wrapper reads with
  ``head -c N`` (which never reads past N bytes) and evaluates, so it works whatever the server's
  ``AcceptEnv`` says and values never appear in ``ps``.
- ``become`` runs ``sudo -S -p <random prompt>`` and answers the prompt on stdin only when sudo
  actually asks (a root login, NOPASSWD or a cached ticket ask nothing, and a password written
  blindly would then become the command's input). The wrapped shell prints a random marker first;
  the command's own stdin is sent only after that marker, so it can never be eaten by sudo.

Every command with a timeout also gets a host-side deadline (``remote_deadline``), cheap first:
``exec /usr/bin/timeout -s KILL N sh -c '<cmd>'``, which any login shell (bash, dash, zsh, ash,
mksh, csh, fish) runs as one ``exec``. coreutils and busybox put ``timeout`` there (Debian, Ubuntu,
RHEL, SUSE, Alpine), and so does FreeBSD. Where the path does not exist (NixOS, for one), the
command is sent again with the portable guard (``sh -c 'if command -v timeout …'``, which finds
``timeout`` on PATH or runs the command unguarded), and that connection gets the portable guard
from then on (``_PORTABLE_GUARD``): the first command on such a connection pays two short extra
round trips (the failed attempt and a probe), later ones none. Under the env reader and sudo it
is the host's ``sh`` that runs the fast line's ``exec``, so the words are ``sh``'s.

Why the re-send cannot run a command twice:
- ``exec`` of an absolute path either replaces the shell with ``/usr/bin/timeout`` (after which that
  shell can print nothing more: it is gone), or fails, and a non-interactive shell then exits at
  once (status 127; csh and tcsh: 1) having run nothing else. The command text is only an argument
  of that ``exec``. Before it, the env reader ran ``head`` and ``eval`` of the ``export`` lines
  (nothing outside its own process) and become ran sudo and ``echo <marker>``: sudo itself runs
  again on the re-send (a second line in the host's auth log, a second prompt answered).
- The re-send happens only when the attempt looks exactly like that failed ``exec``: that exit
  status, nothing on stdout (after the become marker) and the shell's own "cannot execute
  /usr/bin/timeout" wording on stderr (``_NO_FAST_TIMEOUT``).
- That look is necessary, not sufficient: a command can end the same way on its own, for example
  ``chroot /srv/jail /usr/bin/timeout …`` into a tree without it ("chroot: failed to run command
  '/usr/bin/timeout': No such file or directory", status 127, no stdout), or ``ssh`` to a host
  without it. So a probe, ``test -e /usr/bin/timeout`` on the same connection, decides first: if
  the path exists for the login shell, the ``exec`` did not fail, the command ran and its result
  is returned as it is. Only a command that deletes /usr/bin/timeout (or runs while a package
  removal does) and then ends in exactly that way could still be sent twice.
- stdin is not consumed by a failed attempt in any way that matters: the whole stdin (env preamble,
  then the caller's data) is sent again from the start to the new process.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import secrets
import shlex
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import asyncssh

from mssp.connectors.base import CommandResult
from mssp.errors import AuthError, CommandTimeout, ParameterError

CHUNK = 65536
KILL_GRACE = 0.5
REMOTE_DEADLINE_MARGIN = 2
TIMEOUT_PATH = "/usr/bin/timeout"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NO_FAST_TIMEOUT = re.compile(
    # bash, dash, busybox ash, mksh ("inaccessible or not found"), csh/tcsh ("Command not found.")
    r"/usr/bin/timeout: (?:[^\n]*not found|No such file or directory)"
    r"|no such file or directory: /usr/bin/timeout"  # zsh
    r"|Unknown command: /usr/bin/timeout"  # fish
)
"""The login shell's words when the fast path's ``exec /usr/bin/timeout`` finds nothing there."""
_NO_FAST_TIMEOUT_STATUS = (127, 1)
"""127 from POSIX shells and fish; csh and tcsh exit 1."""
_PROBE = f"test -e {TIMEOUT_PATH}"
_PORTABLE_GUARD: weakref.WeakSet[asyncssh.SSHClientConnection] = weakref.WeakSet()
"""Connections whose host has no /usr/bin/timeout: their commands get the portable guard."""


class CappedBuffer:
    """Keeps the first ``cap`` bytes of a stream and only counts the rest."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._data = bytearray()
        self.dropped = 0

    def feed(self, data: bytes) -> None:
        room = self.cap - len(self._data)
        if room > 0:
            self._data += data[:room]
        self.dropped += max(0, len(data) - max(room, 0))

    def text(self) -> str:
        return self._data.decode("utf-8", errors="replace")


def env_preamble(env: Mapping[str, str] | None) -> bytes:
    """Shell text exporting ``env``, for the wrapper to read from stdin. Validates the names."""
    if not env:
        return b""
    lines = []
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise ParameterError(f"invalid environment variable name {name!r}")
        if "\0" in value:
            raise ParameterError(f"environment variable {name} contains a NUL byte")
        lines.append(f"export {name}={shlex.quote(value)}\n")
    return "".join(lines).encode()


@dataclass(frozen=True)
class Wrapped:
    """What is sent for one command: the remote line, and the stdin prefix it expects first."""

    remote_command: str
    preamble: bytes
    prompt: bytes | None = None
    """sudo's prompt (become only)."""
    marker: bytes | None = None
    """First stdout line of the privileged shell (become only)."""


def remote_deadline(command: str, timeout: float | None, *, portable: bool = False) -> str:
    """Have the host itself kill the command's process group shortly after the client's deadline.

    The client sends a KILL signal request on timeout, but OpenSSH refuses signal requests for
    root logins ("session signalling requires privilege separation") and closing a non-PTY
    channel does not stop the command. coreutils/busybox ``timeout`` kills its whole process
    group. The fast line execs /usr/bin/timeout from the login shell (one process more than the
    bare command); ``portable`` looks ``timeout`` up on PATH first and, without one, runs the
    command unguarded (only the signal applies). See the module docstring for when each is used.
    """
    if timeout is None:
        return command
    seconds = math.ceil(timeout) + REMOTE_DEADLINE_MARGIN
    if not portable:
        return f"exec {TIMEOUT_PATH} -s KILL {seconds} sh -c {shlex.quote(command)}"
    guard = (
        f'if command -v timeout >/dev/null 2>&1; then exec timeout -s KILL {seconds} sh -c "$1";'
        ' else exec sh -c "$1"; fi'
    )
    return f"sh -c {shlex.quote(guard)} sh {shlex.quote(command)}"


def wrap_command(
    command: str,
    *,
    env: Mapping[str, str] | None,
    become: bool,
    username: str,
    timeout: float | None = None,
    portable: bool = False,
) -> Wrapped:
    preamble = env_preamble(env)
    inner = remote_deadline(command, timeout, portable=portable)
    if preamble:
        reader = f'eval "$(head -c {len(preamble)})" && exec sh -c "$1"'
        inner = f"sh -c {shlex.quote(reader)} sh {shlex.quote(inner)}"
    # A root login needs no sudo (and may not have it installed).
    if not become or username == "root":
        return Wrapped(inner, preamble)
    nonce = secrets.token_hex(12)
    prompt = f"[mssp-sudo-{nonce}]"
    marker = f"MSSP-BECOME-{nonce}"
    script = f'echo {marker}; exec sh -c "$1"'
    remote = (
        f"sudo -S -p {shlex.quote(prompt)} -- sh -c {shlex.quote(script)} sh {shlex.quote(inner)}"
    )
    return Wrapped(remote, preamble, prompt.encode(), marker.encode())


class _BecomeGate:
    """Watches sudo's prompt on stderr and the marker on stdout; answers the prompt once."""

    def __init__(self, wrapped: Wrapped, password: str | None, stdin: asyncssh.SSHWriter) -> None:
        assert wrapped.prompt is not None and wrapped.marker is not None
        self.prompt = wrapped.prompt
        self.marker = wrapped.marker + b"\n"
        self.password = password
        self.stdin = stdin
        self.opened = asyncio.get_running_loop().create_future()
        self._out = b""
        self._err = b""
        self._prompts = 0

    def stdout(self, data: bytes) -> bytes:
        """Pass-through once open; before that, hold bytes until the marker is seen."""
        if self.opened.done():
            return data
        self._out += data
        if len(self._out) < len(self.marker) and self.marker.startswith(self._out):
            return b""
        if self._out.startswith(self.marker):
            rest, self._out = self._out[len(self.marker) :], b""
            self.opened.set_result(True)
            return rest
        # Not our marker (sudo failed and something else printed): hand it over unchanged.
        held, self._out = self._out, b""
        self.opened.set_result(False)
        return held

    def stderr(self, data: bytes) -> bytes:
        if self.opened.done():
            return data
        self._err += data
        while self.prompt in self._err:
            before, _, self._err = self._err.partition(self.prompt)
            self._prompts += 1
            if self.password is None:
                raise AuthError("sudo asks for a password and no become password is configured")
            if self._prompts > 1:
                raise AuthError("sudo refused the become password")
            self.stdin.write(self.password.encode() + b"\n")
            if before:
                return before
        # Keep a tail that may be the start of a prompt; release the rest.
        keep = len(self.prompt) - 1
        released, self._err = self._err[:-keep] if keep else self._err, self._err[-keep:]
        return released

    def flush_stderr(self) -> bytes:
        held, self._err = self._err, b""
        return held


async def execute(
    conn: asyncssh.SSHClientConnection,
    command: str,
    *,
    timeout: float | None,
    stdin: str | bytes | None,
    env: Mapping[str, str] | None,
    become: bool,
    username: str,
    become_password: str | None,
    cap: int,
    open_timeout: float,
) -> CommandResult:
    """Run ``command``; asyncssh errors propagate for the connector to map.

    With a timeout, the fast remote deadline first, unless this connection's host is known to
    lack /usr/bin/timeout; if the attempt shows that it does, the portable guard, once more, from
    the start (see the module docstring for why that cannot run the command twice).
    """
    data = stdin.encode() if isinstance(stdin, str) else (stdin or b"")
    started = time.monotonic()
    portable = conn in _PORTABLE_GUARD

    async def attempt(portable_guard: bool, budget: float | None) -> CommandResult:
        wrapped = wrap_command(
            command,
            env=env,
            become=become,
            username=username,
            timeout=timeout,
            portable=portable_guard,
        )
        return await _attempt(
            conn,
            command,
            wrapped,
            data,
            budget=budget,
            timeout=timeout,
            started=started,
            become_password=become_password,
            cap=cap,
            open_timeout=open_timeout,
        )

    first = await attempt(portable, timeout)
    if timeout is None or portable or not _looks_like_no_fast_timeout(first):
        return first
    if not await _fast_timeout_is_missing(conn, open_timeout):
        return first  # /usr/bin/timeout is there: the command ran, and this is its own result
    _PORTABLE_GUARD.add(conn)
    return await attempt(True, max(0.0, timeout - (time.monotonic() - started)))


def _looks_like_no_fast_timeout(result: CommandResult) -> bool:
    """Did the login shell fail to exec /usr/bin/timeout (before anything of the command ran)?"""
    return (
        result.exit_status in _NO_FAST_TIMEOUT_STATUS
        and result.stdout == ""
        and not result.truncated
        and _NO_FAST_TIMEOUT.search(result.stderr) is not None
    )


async def _fast_timeout_is_missing(conn: asyncssh.SSHClientConnection, open_timeout: float) -> bool:
    """Ask the login shell whether /usr/bin/timeout exists (0: it does, 1: it does not)."""
    async with asyncio.timeout(open_timeout):  # not wait_for: see _attempt
        probe = await conn.run(_PROBE, check=False)
    return probe.exit_status == 1 and not probe.stdout


async def _attempt(
    conn: asyncssh.SSHClientConnection,
    command: str,
    wrapped: Wrapped,
    data: bytes,
    *,
    budget: float | None,
    timeout: float | None,
    started: float,
    become_password: str | None,
    cap: int,
    open_timeout: float,
) -> CommandResult:
    """One channel: send ``wrapped``, then its preamble and ``data`` on stdin; collect the output.

    ``budget``: seconds from the channel's opening to the client's deadline; ``timeout``: the
    caller's timeout, for the message; ``started``: when the caller asked, for the duration.
    """
    # Not asyncio.wait_for: on Python 3.11 it can swallow a cancel that arrives as the channel
    # opens (cpython#86296), and an immediate cancel of a run must never be lost.
    async with asyncio.timeout(open_timeout):
        proc = await conn.create_process(wrapped.remote_command, encoding=None)
    out, err = CappedBuffer(cap), CappedBuffer(cap)
    gate = _BecomeGate(wrapped, become_password, proc.stdin) if wrapped.marker is not None else None

    async def feed() -> None:
        payload = wrapped.preamble + data
        if gate is not None and not await gate.opened:
            payload = b""  # sudo did not start our shell: send nothing it could misread
        with contextlib.suppress(BrokenPipeError, ConnectionError, asyncssh.Error):
            for start in range(0, len(payload), CHUNK):
                proc.stdin.write(payload[start : start + CHUNK])
                await proc.stdin.drain()
            proc.stdin.write_eof()

    async def pump_out() -> None:
        while chunk := await proc.stdout.read(CHUNK):
            out.feed(gate.stdout(chunk) if gate else chunk)

    async def pump_err() -> None:
        while chunk := await proc.stderr.read(CHUNK):
            err.feed(gate.stderr(chunk) if gate else chunk)
        if gate:
            err.feed(gate.flush_stderr())

    def result(status: int | None) -> CommandResult:
        return CommandResult(
            command=command,
            exit_status=status,
            stdout=out.text(),
            stderr=err.text(),
            duration=time.monotonic() - started,
            truncated=bool(out.dropped or err.dropped),
            dropped_bytes=out.dropped + err.dropped,
        )

    tasks = [asyncio.create_task(pump_out()), asyncio.create_task(pump_err())]
    feeder = asyncio.create_task(feed())
    try:
        async with asyncio.timeout(budget):
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
            await proc.wait()
    except TimeoutError:
        await _kill(proc)
        raise CommandTimeout(
            f"command did not finish within {timeout:g} s; it was killed", result=result(None)
        ) from None
    except BaseException:
        await asyncio.shield(_kill(proc))
        raise
    finally:
        for task in (*tasks, feeder):
            task.cancel()
        await asyncio.gather(*tasks, feeder, return_exceptions=True)
        proc.close()
    return result(proc.exit_status if proc.exit_signal is None else None)


async def _kill(proc: asyncssh.SSHClientProcess) -> None:
    """Kill the remote command, then close its channel.

    A signal request first (OpenSSH >= 7.9 delivers it); waiting briefly for the channel to close
    lets the server act on it before the close. Closing also ends the command's stdin and output
    pipes on servers that ignore signal requests.
    """
    with contextlib.suppress(Exception):
        proc.kill()
        await asyncio.wait_for(proc.wait_closed(), KILL_GRACE)
    proc.close()
