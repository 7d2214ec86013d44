"""Another local user can read nothing mssp keeps: its home folder, files and database are private.

Real ``mssp`` processes, started with the common umask 022, create the home folder, the database,
the vault header, the audit signing key, logs and lock files; then, while a process holds the
database open (so SQLite's -wal and -shm files exist), every folder must be 0700 and every file
0600: no group or other permission anywhere, so neither another user nor a careless backup of a
shared folder gets at the (encrypted) credentials, the audit key or the logs.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from mssp import audit
from mssp import db as mssp_db
from mssp.config import load_settings

PASSPHRASE = "a private home passphrase"


def _mssp(home: Path, *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [sys.executable, "-c", "from mssp.cli import main; main()", *args],
        input=stdin,
        env={**os.environ, "MSSP_HOME": str(home), "MSSP_VAULT_PASSPHRASE": PASSPHRASE},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(0o022),  # what most desktops and servers use
    )
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


def _loose(root: Path) -> list[str]:
    loose = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_symlink() or mode & 0o077:
            loose.append(f"{oct(mode)} {path.relative_to(root.parent)}")
    return loose


async def test_another_local_user_can_read_nothing_in_mssp_home(tmp_path: Path) -> None:
    home = tmp_path / "mssp-home"
    _mssp(home, "init")
    _mssp(home, "client", "add", "Acme Dental")
    _mssp(home, "site", "add", "acme-dental/hq")
    _mssp(home, "cred", "add", "acme-dental/root", "--password-stdin", stdin="s3cret-pw\n")
    _mssp(home, "host", "add", "acme-dental/hq/fs01", "--address", "192.0.2.10")
    _mssp(home, "audit", "checkpoint", "--out", str(tmp_path / "offsite.jsonl"))
    _mssp(home, "vault", "rotate-key")
    _mssp(home, "audit", "list", "--json")
    settings = load_settings({"MSSP_HOME": str(home)})
    old = os.umask(0o022)
    try:
        await mssp_db.init(settings, run_migrations=False)
        try:
            await audit.record("test.open", target="wal")
            names = {p.name for p in home.rglob("*")}
            assert {"mssp.db", "vault.json", "config.toml", "mssp.log"} <= names
            assert any(n.endswith("-wal") for n in names), names
            assert any(n.endswith(".key") for n in names), names  # the audit signing key
            assert _loose(home) == []
        finally:
            await mssp_db.close()
    finally:
        os.umask(old)
    assert _loose(home) == []
