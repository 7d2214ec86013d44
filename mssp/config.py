"""Settings: one frozen value loaded once at the entry point from config.toml and MSSP_* variables.

Nothing below the entry point reads the environment or the config file: it receives ``Settings``.

Layout: with ``MSSP_HOME`` set, everything lives under it (``config.toml``, ``mssp.db``,
``vault.json``, ``logs/``...). Without it, the XDG base directories are used: configuration in
``$XDG_CONFIG_HOME/mssp`` and data in ``$XDG_DATA_HOME/mssp``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mssp.errors import ConfigError

HOST_KEY_POLICIES = ("accept-new", "strict")


@dataclass(frozen=True)
class Settings:
    """Everything configurable, resolved to concrete values."""

    config_dir: Path
    """Where config.toml and the vault header live."""
    data_dir: Path
    """Where the SQLite database, logs, recordings and lab state live."""
    database_url: str = ""
    """Tortoise database URL; empty means SQLite at data_dir/mssp.db."""
    vault_key_file: Path | None = None
    """Unattended vault unlock: a file (mode 0600) holding the passphrase."""
    forks: int = 100
    """Global limit of hosts worked on at once."""
    per_client_limit: int = 20
    """Limit of hosts of one client worked on at once (protects a small client's uplink)."""
    connect_timeout: float = 10.0
    """Seconds to establish a connection and log in."""
    command_timeout: float = 600.0
    """Default seconds a remote command may run."""
    keepalive_interval: float = 15.0
    """Seconds between SSH keep-alives; three missed ones drop the connection."""
    host_key_policy: str = "accept-new"
    """First contact with a host: accept-new pins the key; strict refuses unknown keys."""
    output_cap: int = 1024 * 1024
    """Bytes kept per output stream of a command; the rest is counted and dropped."""
    idle_close: float = 300.0
    """Seconds a pooled connection may stay idle before it is closed."""
    relay_url: str = ""
    """The relay this core uses for relayed sites (wss://...)."""
    key_bindings: Mapping[str, str] = field(default_factory=dict)
    """Dashboard key remapping: binding id -> key."""

    @property
    def db_path(self) -> Path:
        return self.data_dir / "mssp.db"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite://{self.db_path}"

    @property
    def is_postgres(self) -> bool:
        return self.effective_database_url.startswith(
            ("postgres://", "postgresql://", "asyncpg://")
        )

    @property
    def vault_path(self) -> Path:
        return self.config_dir / "vault.json"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_INT_FIELDS = {"forks", "per_client_limit", "output_cap"}
_FLOAT_FIELDS = {"connect_timeout", "command_timeout", "keepalive_interval", "idle_close"}
_STR_FIELDS = {"database_url", "host_key_policy", "relay_url"}
_PATH_FIELDS = {"vault_key_file"}


def _dirs(env: Mapping[str, str]) -> tuple[Path, Path]:
    home = env.get("MSSP_HOME")
    if home:
        root = Path(home).expanduser()
        return root, root
    user_home = Path(env.get("HOME") or Path.home())
    config_base = Path(env.get("XDG_CONFIG_HOME") or user_home / ".config")
    data_base = Path(env.get("XDG_DATA_HOME") or user_home / ".local" / "share")
    return config_base / "mssp", data_base / "mssp"


def _coerce(name: str, value: Any, source: str) -> Any:
    try:
        if name in _INT_FIELDS:
            if isinstance(value, bool):
                raise ValueError
            result: Any = int(value)
            if result <= 0:
                raise ValueError
            return result
        if name in _FLOAT_FIELDS:
            if isinstance(value, bool):
                raise ValueError
            result = float(value)
            if result <= 0:
                raise ValueError
            return result
        if name in _STR_FIELDS:
            if not isinstance(value, str):
                raise ValueError
            return value
        if name in _PATH_FIELDS:
            if not isinstance(value, str) or not value:
                raise ValueError
            return Path(value).expanduser()
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: invalid value for {name!r}") from None
    raise ConfigError(f"{source}: unknown setting {name!r}")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from config.toml (if present) then MSSP_* environment variables."""
    env = os.environ if env is None else env
    config_dir, data_dir = _dirs(env)
    values: dict[str, Any] = {}
    config_file = config_dir / "config.toml"
    bindings: dict[str, str] = {}
    if config_file.exists():
        try:
            raw = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config_file}: not valid TOML: {exc}") from None
        keys = raw.pop("keys", {})
        if not isinstance(keys, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in keys.items()
        ):
            raise ConfigError(f"{config_file}: [keys] must map binding ids to key names")
        bindings.update(keys)
        for name, value in raw.items():
            values[name] = _coerce(name, value, str(config_file))
    for name in _INT_FIELDS | _FLOAT_FIELDS | _STR_FIELDS | _PATH_FIELDS:
        env_name = "MSSP_" + name.upper()
        if env_name in env and env[env_name] != "":
            values[name] = _coerce(name, env[env_name], env_name)
    policy = values.get("host_key_policy", "accept-new")
    if policy not in HOST_KEY_POLICIES:
        raise ConfigError(f"host_key_policy must be one of {', '.join(HOST_KEY_POLICIES)}")
    return Settings(config_dir=config_dir, data_dir=data_dir, key_bindings=bindings, **values)
