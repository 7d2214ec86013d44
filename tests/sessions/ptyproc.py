"""Drive a child process through a real pseudo-terminal, as a person at a terminal would."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time


class PtyProcess:
    """A child whose stdin/stdout/stderr are the slave side of a new PTY (its controlling tty)."""

    def __init__(self, argv: list[str], env: dict[str, str], *, cols: int = 80, rows: int = 24):
        self.master, self.slave = os.openpty()
        self.resize(cols, rows)
        self.initial_attrs = termios.tcgetattr(self.slave)

        def controlling_tty() -> None:  # child, between fork and exec
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            argv,
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            env=env,
            preexec_fn=controlling_tty,
            close_fds=True,
        )
        self.output = b""
        """Every byte the terminal received so far."""

    def resize(self, cols: int, rows: int) -> None:
        """Like a window resize: the kernel sends SIGWINCH to the terminal's foreground group."""
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def _pump(self, wait: float) -> None:
        ready, _, _ = select.select([self.master], [], [], wait)
        if ready:
            try:
                self.output += os.read(self.master, 65536)
            except OSError:
                pass

    def expect(self, pattern: bytes, *, timeout: float = 30.0, start: int = 0) -> re.Match[bytes]:
        """Wait until ``pattern`` (a regex) appears in the output after offset ``start``."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            found = regex.search(self.output, start)
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{pattern!r} not seen in {timeout}s; output so far: {self.output[-2000:]!r}"
                )
            self._pump(0.05)

    def wait(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"child did not exit; output: {self.output[-2000:]!r}")
            self._pump(0.05)
        # drain what is left
        for _ in range(5):
            self._pump(0.02)
        return self.proc.returncode

    def attrs(self) -> list:
        return termios.tcgetattr(self.slave)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
