"""Remote output is neutralised for every view and capped with a visible mark (pure)."""

from __future__ import annotations

import pytest

from mssp.output import cap, neutralise, safe_output


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text\nline two\ttab", "plain text\nline two\ttab"),
        ("\x1b[2J\x1b[H cleared", "\\x1b[2J\\x1b[H cleared"),  # clear screen, home
        ("\x1b]0;pwned\x07title", "\\x1b]0;pwned\\x07title"),  # OSC window title
        ("\x1b]52;c;ZXZpbA==\x07", "\\x1b]52;c;ZXZpbA==\\x07"),  # OSC 52 clipboard write
        ("\x1bP+q\x1b\\", "\\x1bP+q\\x1b\\"),  # DCS
        ("\x9b31m C1 CSI", "\\x9b31m C1 CSI"),
        ("ok\rFAKE", "ok\\rFAKE"),  # a lone CR would overwrite the line
        ("windows\r\nline", "windows\nline"),
        ("bell\x07 del\x7f nul\x00", "bell\\x07 del\\x7f nul\\x00"),
        ("admin\u202euser", "admin\\u202euser"),  # bidi override (Trojan Source)
        ("façade ünïcode ✓", "façade ünïcode ✓"),
        ("", ""),
    ],
)
def test_escape_sequences_neutralised(raw: str, shown: str) -> None:
    assert neutralise(raw) == shown


def test_neutralised_text_has_no_control_characters() -> None:
    hostile = "".join(chr(c) for c in range(0x00, 0xA0)) + "\u202a\u202b\u202c\u202d\u2066\u2069"
    safe = neutralise(hostile)
    assert all(ch in "\n\t" or (ch.isprintable() and ord(ch) >= 0x20) for ch in safe)


def test_cap_keeps_head_and_tail_with_a_mark() -> None:
    text = "HEAD" + "x" * 10_000 + "TAIL"
    capped = cap(text, 100)
    assert capped.truncated and capped.dropped == len(text) - 100
    assert capped.text.startswith("HEAD") and capped.text.endswith("TAIL")
    assert f"truncated, {capped.dropped} characters dropped" in capped.text


def test_cap_leaves_short_text_alone() -> None:
    assert cap("short", 100).text == "short"
    assert not cap("short", 100).truncated


def test_safe_output_neutralises_before_capping() -> None:
    result = safe_output("\x1b[31m" * 50, 40)
    assert "\x1b" not in result.text and result.truncated
