"""The source never disables host-key checking, forwards an agent or X11, or runs a shell string.

An AST scan (so prose in docstrings and comments that *names* the forbidden forms does not count)
over mssp/, relay/ and tui/ for:
- ``known_hosts=None`` as a keyword, a dict entry, or a variable named known_hosts set to None;
- ``agent_forwarding=True`` and ``x11_forwarding=True`` (keyword or dict entry);
- ``shell=True`` (keyword or dict entry).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("mssp", "relay", "tui")
FORBIDDEN = {
    "known_hosts": None,
    "agent_forwarding": True,
    "x11_forwarding": True,
    "shell": True,
}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    what: str


def _forbidden(name: str | None, value: ast.expr | None) -> bool:
    if name not in FORBIDDEN or not isinstance(value, ast.Constant):
        return False
    return value.value is FORBIDDEN[name]


def scan_source(text: str, path: str = "<string>") -> list[Finding]:
    findings = []
    for node in ast.walk(ast.parse(text, filename=path)):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if _forbidden(kw.arg, kw.value):
                    findings.append(Finding(path, kw.value.lineno, f"{kw.arg}={kw.value.value!r}"))  # type: ignore[attr-defined]
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    if _forbidden(key.value, value):
                        findings.append(Finding(path, key.lineno, f"{{{key.value!r}: ...}}"))
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                name = target.id if isinstance(target, ast.Name) else None
                if isinstance(target, ast.Attribute):
                    name = target.attr
                if name == "known_hosts" and _forbidden(name, node.value):
                    findings.append(Finding(path, node.lineno, "known_hosts = None"))
    return findings


def python_files() -> list[Path]:
    files: list[Path] = []
    for top in SCANNED:
        base = ROOT / top
        if base.is_dir():
            files.extend(p for p in base.rglob("*.py") if "migrations" not in p.parts)
    return sorted(files)


def test_no_source_disables_host_keys_forwards_agents_or_runs_shell_strings() -> None:
    files = python_files()
    assert ROOT / "mssp" / "connectors" / "ssh.py" in files
    findings = [
        f for path in files for f in scan_source(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert findings == [], "\n".join(f"{f.path}:{f.line}: {f.what}" for f in findings)


def test_the_scan_finds_every_forbidden_form() -> None:
    bad = """
import asyncssh, subprocess
asyncssh.connect("h", known_hosts=None)
asyncssh.connect("h", agent_forwarding=True, x11_forwarding=True)
subprocess.run("ls", shell=True)
opts = {"known_hosts": None, "shell": True}
known_hosts = None
self.known_hosts: object = None
"""
    whats = [f.what for f in scan_source(bad)]
    assert len(whats) == 8, whats
    fine = """
asyncssh.connect("h", known_hosts=([key], [], []), agent_forwarding=False)
subprocess.run(["ls"], shell=False)
'''a docstring saying never known_hosts=None or shell=True'''
# a comment: x11_forwarding=True is forbidden
"""
    assert scan_source(fine) == []
