"""Pure parsers of command output (no I/O): each fact is a command plus one of these functions.

Tested from captured outputs kept as fixture tables (tests/tasks/fixtures/). Parsers never raise on
odd output they can skip; they raise TaskError only when output is unusable as a whole.
"""

from __future__ import annotations

SECTION = "@@mssp-section:"


def split_sections(text: str) -> dict[str, str]:
    """Split the output of a script that prints ``@@mssp-section:NAME`` before each command.

    Lines before the first marker are dropped; a section that printed nothing maps to "".
    The first section of a name wins: a marker line smuggled into later output (a file a user
    controls) cannot replace a section printed before it.
    """
    sections: dict[str, str] = {}
    current: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith(SECTION):
            if current is not None:
                sections.setdefault(current, "\n".join(lines))
            current, lines = line[len(SECTION) :].strip(), []
        elif current is not None:
            lines.append(line)
    if current is not None:
        sections.setdefault(current, "\n".join(lines))
    return sections
