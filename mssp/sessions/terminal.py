"""The local terminal during an interactive session: raw mode that is always undone, size, signals.

``raw_terminal`` saves the termios state first and restores it in ``finally``, and the session
installs SIGTERM/SIGHUP handlers that end the session instead of the process, so the terminal is
restored on every way out short of SIGKILL.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import termios
import tty
from collections.abc import Iterator
from dataclasses import dataclass

DEFAULT_SIZE = (80, 24)


@dataclass(frozen=True)
class TerminalIO:
    """Which file descriptors are the user's terminal, and what kind of terminal it is."""

    stdin_fd: int = 0
    stdout_fd: int = 1
    term: str = "xterm-256color"
    """The TERM value sent to the host (the CLI passes the user's own)."""


def terminal_size(io: TerminalIO) -> tuple[int, int]:
    """(columns, rows) of the local terminal; 80x24 when neither descriptor is a terminal."""
    for fd in (io.stdout_fd, io.stdin_fd):
        with contextlib.suppress(OSError):
            rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
            if cols and rows:
                return cols, rows
    return DEFAULT_SIZE


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[bool]:
    """Put ``fd`` in raw mode for the block (yields False, doing nothing, if it is no terminal).

    The saved state is restored whatever happens in the block; keys like Ctrl-C then reach the
    host as bytes instead of signalling this process.
    """
    if not os.isatty(fd):
        yield False
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield True
    finally:
        # TCSADRAIN: let pending output reach the screen before echo and line editing return
        with contextlib.suppress(termios.error):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte to a (blocking or non-blocking) descriptor."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            import select

            select.select([], [fd], [], 1.0)
            continue
        view = view[written:]
