"""asciicast v2 (the asciinema format): write a session recording, read one back strictly, play it.

A recording is a JSON header line then one JSON array per event: ``[time, code, data]`` with code
"o" (output), "i" (input), "r" (resize, data "COLSxROWS") or "m" (marker). mssp records output only
by default: what the user types (passwords at a sudo prompt included) is not written; the echo of
ordinary typing still appears in the output, as on screen.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mssp.errors import RecordingError

EVENT_CODES = ("o", "i", "r", "m")
MAX_LINE = 8 * 1024 * 1024


@dataclass(frozen=True)
class Header:
    """The first line of an asciicast v2 file."""

    width: int
    height: int
    timestamp: int | None = None
    title: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": 2, "width": self.width, "height": self.height}
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp
        if self.title:
            out["title"] = self.title
        if self.env:
            out["env"] = self.env
        return out


@dataclass(frozen=True)
class Event:
    time: float
    code: str
    data: str


class Writer:
    """Appends events to a recording file as they happen; keeps a running SHA-256 of the bytes."""

    def __init__(
        self,
        path: Path,
        header: Header,
        *,
        record_input: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.record_input = record_input
        self._clock = clock
        self._sha = hashlib.sha256()
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            self._fh: IO[bytes] | None = os.fdopen(fd, "wb")
        except OSError as exc:
            raise RecordingError(f"cannot write recording {path}: {exc.strerror}") from None
        self._start = clock()
        self._write_line(header.to_json())

    def _write_line(self, value: Any) -> None:
        if self._fh is None:
            raise RecordingError("recording already closed")
        line = (json.dumps(value, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            self._fh.write(line)
            self._fh.flush()
        except OSError as exc:
            raise RecordingError(f"cannot write recording {self.path}: {exc.strerror}") from None
        self._sha.update(line)

    def _event(self, code: str, data: str) -> None:
        self._write_line([round(self._clock() - self._start, 6), code, data])

    def output(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if text:
            self._event("o", text)

    def input(self, data: bytes) -> None:
        if self.record_input:
            self._event("i", data.decode("utf-8", "replace"))

    def resize(self, cols: int, rows: int) -> None:
        self._event("r", f"{cols}x{rows}")

    def marker(self, label: str) -> None:
        self._event("m", label)

    def close(self) -> str:
        """Close the file; returns the hex SHA-256 of everything written (for the audit log)."""
        if self._fh is not None:
            tail = self._decoder.decode(b"", final=True)
            if tail:
                self._event("o", tail)
            try:
                os.fsync(self._fh.fileno())
            finally:
                self._fh.close()
                self._fh = None
        return self._sha.hexdigest()


def _fail(path: Path, line: int, message: str) -> RecordingError:
    return RecordingError(f"{path}:{line}: {message}")


def _loads(path: Path, line: int, raw: str, what: str) -> Any:
    """json.loads for a line of a recording (a file anyone could hand us): malformed JSON, deep
    nesting (RecursionError) and integers of more than 4,300 digits (ValueError) alike are a
    RecordingError."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise _fail(path, line, f"{what} is not JSON") from None


def _parse_header(path: Path, raw: str) -> Header:
    value = _loads(path, 1, raw, "header")
    if not isinstance(value, dict) or value.get("version") != 2:
        raise _fail(path, 1, "not an asciicast v2 header")
    width, height = value.get("width"), value.get("height")
    if not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 < v < 10000 for v in (width, height)
    ):
        raise _fail(path, 1, "width and height must be positive integers")
    ts = value.get("timestamp")
    env = value.get("env") or {}
    if not isinstance(env, dict):
        raise _fail(path, 1, "env must be an object")
    return Header(
        width=width,
        height=height,
        timestamp=ts if isinstance(ts, int) and not isinstance(ts, bool) else None,
        title=str(value.get("title", ""))[:200],
        env={str(k): str(v) for k, v in env.items()},
    )


def _parse_event(path: Path, number: int, raw: str, previous: float) -> Event:
    value = _loads(path, number, raw, "event")
    if not (isinstance(value, list) and len(value) == 3):
        raise _fail(path, number, "event must be [time, code, data]")
    t, code, data = value
    if isinstance(t, bool) or not isinstance(t, int | float) or t < 0 or t != t:
        raise _fail(path, number, "event time must be a non-negative number")
    if t < previous:
        raise _fail(path, number, "event times go backwards")
    if code not in EVENT_CODES or not isinstance(data, str):
        raise _fail(path, number, "unknown event code or non-text data")
    return Event(float(t), code, data)


def read(path: Path) -> tuple[Header, list[Event]]:
    """Read a whole recording; RecordingError (with file and line) on anything malformed."""
    header: Header | None = None
    events: list[Event] = []
    try:
        with open(path, "rb") as fh:
            for number, line in enumerate(fh, start=1):
                if len(line) > MAX_LINE:
                    raise _fail(path, number, "line too long")
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError:
                    raise _fail(path, number, "not UTF-8") from None
                if not text.strip():
                    continue
                if header is None:
                    header = _parse_header(path, text)
                else:
                    previous = events[-1].time if events else 0.0
                    events.append(_parse_event(path, number, text, previous))
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc.strerror}") from None
    if header is None:
        raise _fail(path, 1, "empty file")
    return header, events


def output_text(events: list[Event]) -> str:
    """Everything the terminal showed, concatenated."""
    return "".join(e.data for e in events if e.code == "o")


def play(
    events: list[Event],
    write: Callable[[str], None],
    *,
    speed: float = 1.0,
    max_idle: float | None = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Replay output events in real time divided by ``speed``; long pauses capped at max_idle."""
    if speed <= 0:
        raise RecordingError("speed must be positive")
    previous = 0.0
    for event in _output_events(events):
        gap = event.time - previous
        if max_idle is not None:
            gap = min(gap, max_idle)
        if gap > 0:
            sleep(gap / speed)
        write(event.data)
        previous = event.time


def _output_events(events: list[Event]) -> Iterator[Event]:
    return (e for e in events if e.code == "o")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()
