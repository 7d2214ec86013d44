"""Logging set-up at the entry point: a private log file under data_dir/logs and terse stderr.

Nothing logs a secret on purpose (secrets are ``Secret`` values whose str is masked); the file is
still created with mode 0600 because host names, commands and outputs are client information.
"""

from __future__ import annotations

import logging
import logging.handlers
import os

from mssp.config import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(settings: Settings, verbosity: int = 0) -> None:
    """Configure the root logger once per process. verbosity: 0 warnings, 1 info, 2+ debug."""
    root = logging.getLogger()
    if getattr(root, "_mssp_configured", False):
        return
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO)
    stderr = logging.StreamHandler()
    stderr.setLevel(level)
    stderr.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(stderr)
    try:
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        path = settings.log_dir / "mssp.log"
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8"
        )
        handler.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    except OSError:
        root.warning("cannot write the log file under %s", settings.log_dir)
    # asyncssh logs every channel at INFO; keep it to warnings unless asked for debug.
    logging.getLogger("asyncssh").setLevel(logging.DEBUG if verbosity >= 3 else logging.WARNING)
    logging.getLogger("tortoise").setLevel(logging.WARNING)
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
    # urllib3 (under requests: pywinrm, Apprise) logs request paths, which can hold tokens.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    root._mssp_configured = True  # type: ignore[attr-defined]
