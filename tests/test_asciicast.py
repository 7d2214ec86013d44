"""asciicast v2: what is written reads back; typed input stays out; malformed files are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mssp import asciicast
from mssp.errors import RecordingError


def _clock(values: list[float]):
    it = iter(values)
    return lambda: next(it)


def test_round_trip_and_output_only(tmp_path: Path) -> None:
    path = tmp_path / "rec.cast"
    w = asciicast.Writer(
        path, asciicast.Header(width=80, height=24, timestamp=1), clock=_clock([0, 0.5, 1, 1.5, 2])
    )
    w.output(b"$ sudo true\r\n[sudo] password: ")
    w.input(b"hunter2-canary\r")  # not recorded: output only by default
    w.resize(100, 30)
    w.output("é".encode()[:1])  # a split UTF-8 sequence is joined, not mangled
    w.output("é\r\n".encode()[1:])
    digest = w.close()
    assert digest == asciicast.file_sha256(path)
    header, events = asciicast.read(path)
    assert (header.width, header.height) == (80, 24)
    assert asciicast.output_text(events) == "$ sudo true\r\n[sudo] password: é\r\n"
    assert [e.code for e in events] == ["o", "r", "o"]
    assert b"hunter2-canary" not in path.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o600


def test_existing_file_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "rec.cast"
    path.write_text("keep")
    with pytest.raises(RecordingError):
        asciicast.Writer(path, asciicast.Header(width=80, height=24))
    assert path.read_text() == "keep"


def test_play_honours_speed_and_idle_cap() -> None:
    events = [asciicast.Event(1.0, "o", "a"), asciicast.Event(11.0, "o", "b")]
    slept: list[float] = []
    out: list[str] = []
    asciicast.play(events, out.append, speed=2.0, max_idle=4.0, sleep=slept.append)
    assert out == ["a", "b"] and slept == [0.5, 2.0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("{}\n", "not an asciicast v2 header"),
        ('{"version": 2, "width": 0, "height": 24}\n', "width and height"),
        ('{"version": 2, "width": 80, "height": 24}\n[1, "x", "a"]\n', "unknown event code"),
        ('{"version": 2, "width": 80, "height": 24}\n[2, "o", "a"]\n[1, "o", "b"]\n', "backwards"),
        ('{"version": 2, "width": 80, "height": 24}\n[1, "o"]\n', "[time, code, data]"),
        ('{"version": 2, "width": 80, "height": 24}\nnot json\n', "not JSON"),
    ],
)
def test_malformed_refused_with_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.cast"
    path.write_text(content)
    with pytest.raises(RecordingError, match=message):
        asciicast.read(path)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(st.lists(st.one_of(st.text(max_size=40), st.binary(max_size=40).map(repr)), max_size=5))
def test_reader_fuzz_only_recording_error(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "fuzz.cast"
    header = json.dumps({"version": 2, "width": 80, "height": 24})
    path.write_text("\n".join([header, *lines]), encoding="utf-8", errors="surrogatepass")
    try:
        asciicast.read(path)
    except RecordingError:
        pass
