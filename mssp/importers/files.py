"""Reading inventory files as text: clear errors (file and line) for unreadable or binary input."""

from __future__ import annotations

from pathlib import Path

from mssp.errors import InventoryError


def read_text(path: Path, *, allow_bom: bool = False) -> str:
    """UTF-8 text of ``path``; InventoryError naming the line of the first bad byte."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InventoryError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None
    try:
        # spreadsheets like to write a byte-order mark in front of CSV files
        text = data.decode("utf-8-sig" if allow_bom else "utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InventoryError("not UTF-8 text", path=str(path), line=line) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise InventoryError("binary data (NUL byte)", path=str(path), line=line)
    return text
