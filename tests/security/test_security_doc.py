"""docs/security.md names real tests, and every promise test in tests/security/ is named there.

The promise list and the test list must be comparable; a renamed or deleted test would otherwise
leave the document promising something nothing checks.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"
_PATH = re.compile(r"(tests/[\w/]+\.py)((?:::\w+)?)|(?<![\w/])::(\w+)")


def cited() -> list[tuple[str, str | None]]:
    """(path, test name or None) for each citation; '::name' reuses the path before it."""
    out: list[tuple[str, str | None]] = []
    for line in DOC.read_text().splitlines():
        last: str | None = None
        for match in _PATH.finditer(line):
            if match.group(1):
                last = match.group(1)
                out.append((last, match.group(2)[2:] or None))
            elif last is not None:
                out.append((last, match.group(3)))
    return out


def defined(path: str) -> set[str]:
    text = (ROOT / path).read_text()
    return set(re.findall(r"^\s*(?:async )?def (test_\w+)", text, re.M))


def test_every_test_named_in_the_security_doc_exists() -> None:
    citations = cited()
    assert len(citations) > 80
    missing = [
        f"{path}::{name}" if name else path
        for path, name in citations
        if not (ROOT / path).is_file() or (name is not None and name not in defined(path))
    ]
    assert missing == [], missing


def test_every_promise_test_of_this_suite_is_in_the_security_doc() -> None:
    named = {name for _, name in cited() if name}
    files = {path for path, _ in cited()}
    here = Path(__file__).resolve().parent
    uncited = [
        f"{p.relative_to(ROOT)}::{name}"
        for p in sorted(here.glob("test_*.py"))
        if p.name != Path(__file__).name
        for name in sorted(defined(str(p.relative_to(ROOT))))
        if name not in named and str(p.relative_to(ROOT)) not in files
    ]
    assert uncited == [], uncited
