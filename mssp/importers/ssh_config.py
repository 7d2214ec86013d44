"""Read an OpenSSH client config (``~/.ssh/config``) into hosts, the way ``ssh -G`` resolves them.

- Every non-wildcard, non-negated pattern on a ``Host`` line is a host; blocks whose patterns are
  all wildcards (``Host *``, ``Host *.lan``) only supply values.
- Values follow OpenSSH's first-match-wins rule: for each keyword the first value from a block
  that applies to the alias is used, so ``Host *`` at the bottom supplies defaults.
- ``Include`` is expanded in place (relative paths are relative to ``~/.ssh`` as in OpenSSH, or to
  the file's own folder when the file is not under ``~/.ssh``; globs sorted; nesting limited to 16
  as in OpenSSH); an Include inside a Host block applies only to hosts that block matches.
- ``Match`` blocks are treated conservatively: only ``Match all`` is evaluated; any other criteria
  (exec, user, localnetwork, ...) depend on the moment of connection, so that block's settings are
  NOT applied and the preview says so.
- ``ProxyCommand`` is never imported (it is a command line); ``IdentityFile`` is recorded as an
  option, the key itself is not copied into the vault.
"""

from __future__ import annotations

import fnmatch
import getpass
import glob
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from mssp.errors import InventoryError
from mssp.importers.files import read_text
from mssp.importers.plan import (
    ImportedHost,
    ImportNotice,
    ParsedInventory,
    merge_notices,
    parse_port,
)

MAX_INCLUDE_DEPTH = 16
_WILDCARDS = set("*?")


@dataclass(frozen=True)
class _HostCond:
    patterns: tuple[str, ...]

    def matches(self, alias: str) -> bool:
        alias = alias.lower()
        hit = False
        for pat in self.patterns:
            negated = pat.startswith("!")
            if fnmatch.fnmatchcase(alias, pat.lstrip("!").lower()):
                if negated:
                    return False  # a matching negation ends the block for this alias
                hit = True
        return hit


@dataclass(frozen=True)
class _MatchCond:
    criteria: tuple[str, ...]
    source: str

    @property
    def is_all(self) -> bool:
        return [c.lower() for c in self.criteria] == ["all"]

    def matches(self, alias: str) -> bool:
        return self.is_all


_Cond = _HostCond | _MatchCond


@dataclass(frozen=True)
class _Setting:
    keyword: str
    args: tuple[str, ...]
    conds: tuple[_Cond, ...]
    path: str
    line: int


@dataclass
class _Reader:
    ssh_dir: Path
    settings: list[_Setting]
    aliases: dict[str, tuple[tuple[_Cond, ...], str]]
    notices: list[ImportNotice]

    def read(self, path: Path, enclosing: tuple[_Cond, ...], depth: int) -> None:
        if depth > MAX_INCLUDE_DEPTH:
            raise InventoryError(f"Include nested deeper than {MAX_INCLUDE_DEPTH}", path=str(path))
        text = read_text(path)
        current: _Cond | None = None
        for lineno, raw in enumerate(text.splitlines(), 1):
            parsed = _split_line(raw, str(path), lineno)
            if parsed is None:
                continue
            keyword, args = parsed
            source = f"{path}:{lineno}"
            if keyword == "host":
                current = _HostCond(tuple(args))
                for pat in args:
                    if not pat.startswith("!") and not (_WILDCARDS & set(pat)):
                        self.aliases.setdefault(pat, ((*enclosing, current), source))
                continue
            if keyword == "match":
                current = _MatchCond(tuple(args), source)
                if not current.is_all:
                    self.notices.append(
                        ImportNotice(
                            "warning",
                            f"'Match {' '.join(args)}' depends on the moment of connection; "
                            "its settings were not applied to any host: check them by hand",
                            source,
                        )
                    )
                continue
            conds = (*enclosing, current) if current is not None else enclosing
            if keyword == "include":
                for arg in args:
                    self._include(arg, conds, depth, source)
                continue
            self.settings.append(_Setting(keyword, tuple(args), conds, str(path), lineno))

    def _include(self, arg: str, conds: tuple[_Cond, ...], depth: int, source: str) -> None:
        pattern = os.path.expanduser(arg)
        if not os.path.isabs(pattern):
            pattern = str(self.ssh_dir / pattern)
        matches = sorted(glob.glob(pattern))
        if not matches:
            self.notices.append(
                ImportNotice("info", f"Include {arg} matched no file (looked in {pattern})", source)
            )
        for match in matches:
            if Path(match).is_file():
                self.read(Path(match), conds, depth + 1)


def _split_line(raw: str, path: str, line: int) -> tuple[str, list[str]] | None:
    stripped = raw.strip()
    if not stripped or stripped.startswith("#"):
        return None
    # "Keyword value", "Keyword=value" and "Keyword = value" are all valid
    head = stripped.split(None, 1)
    keyword, rest = head[0], head[1] if len(head) > 1 else ""
    if "=" in keyword:
        keyword, _, tail = keyword.partition("=")
        rest = (tail + " " + rest).strip()
    elif rest.startswith("="):
        rest = rest[1:].strip()
    if not keyword.isalnum():
        raise InventoryError(f"not a config keyword: {keyword!r}", path=path, line=line)
    try:
        args = shlex.split(rest, comments=True, posix=True)
    except ValueError as exc:
        raise InventoryError(f"{keyword}: {exc}", path=path, line=line) from None
    if not args:
        raise InventoryError(f"{keyword} needs a value", path=path, line=line)
    return keyword.lower(), args


def _resolve(alias: str, settings: list[_Setting]) -> dict[str, _Setting]:
    """First match wins, keyword by keyword; IdentityFile accumulates like in OpenSSH."""
    values: dict[str, _Setting] = {}
    identities: list[str] = []
    for setting in settings:
        if not all(c.matches(alias) for c in setting.conds):
            continue
        if setting.keyword == "identityfile":
            identities.append(setting.args[0])
        values.setdefault(setting.keyword, setting)
    if identities:
        first = values["identityfile"]
        values["identityfile"] = _Setting(
            "identityfile", tuple(identities), first.conds, first.path, first.line
        )
    return values


def _expand(value: str, alias: str) -> str:
    return value.replace("%h", alias).replace("%n", alias).replace("%%", "%")


def _default_ssh_dir(path: Path) -> Path:
    """OpenSSH resolves relative Includes against ~/.ssh; a config copied from elsewhere (a
    client's laptop) resolves them beside itself, so the consultant's own files never mix in."""
    home_ssh = Path.home() / ".ssh"
    try:
        path.resolve().relative_to(home_ssh.resolve())
    except ValueError:
        return path.parent
    return home_ssh


def read_ssh_config(
    path: Path,
    *,
    client: str | None,
    site: str | None,
    ssh_dir: Path | None = None,
    local_user: str | None = None,
) -> ParsedInventory:
    """Parse ``path`` (and its Includes) into hosts placed in ``client``/``site``.

    Without ``User``, OpenSSH logs in as the local user: so does the import (``local_user``).
    """
    if not client or not site:
        raise InventoryError(
            "an OpenSSH config has no clients or sites: give --client and --site", path=str(path)
        )
    if ssh_dir is None:
        ssh_dir = _default_ssh_dir(path)
    reader = _Reader(ssh_dir, [], {}, [])
    reader.read(path, (), 0)
    hosts: list[ImportedHost] = []
    notices = list(reader.notices)
    for alias, (conds, source) in reader.aliases.items():
        if not all(c.matches(alias) for c in conds):
            continue  # declared inside an Include whose enclosing block never matches it
        values = _resolve(alias, reader.settings)

        def arg(keyword: str, default: str, values: dict[str, _Setting] = values) -> str:
            setting = values.get(keyword)
            return setting.args[0] if setting else default

        port_setting = values.get("port")
        port = 22
        if port_setting is not None:
            port = parse_port(
                port_setting.args[0],
                what=f"Port for {alias}",
                path=port_setting.path,
                line=port_setting.line,
            )
        options: dict[str, str] = {}
        if "identityfile" in values:
            files = values["identityfile"].args
            options["identity_file"] = files[0]
            if len(files) > 1:
                options["identity_files"] = ",".join(files)
            notices.append(
                ImportNotice(
                    "info",
                    f"IdentityFile {files[0]} recorded as an option; the key is not copied "
                    "into the vault (mssp cred add ... --ssh-key)",
                    "",
                    alias,
                )
            )
        jump = arg("proxyjump", "none")
        if jump.lower() != "none":
            options["proxy_jump"] = jump
        if "proxycommand" in values and values["proxycommand"].args[0].lower() != "none":
            cmd = values["proxycommand"]
            notices.append(
                ImportNotice(
                    "warning",
                    "ProxyCommand is not imported (mssp never runs commands from an inventory)",
                    f"{cmd.path}:{cmd.line}",
                    alias,
                )
            )
        hosts.append(
            ImportedHost(
                client=client,
                site=site,
                name=alias,
                address=_expand(arg("hostname", alias), alias),
                port=port,
                username=arg("user", local_user or getpass.getuser()),
                transport="ssh",
                options=options,
                source=source,
                placement="--client/--site",
            )
        )
    return ParsedInventory(
        format="ssh-config",
        path=str(path),
        hosts=tuple(hosts),
        notices=merge_notices(notices),
        rule=f"every Host goes to {client}/{site} (--client/--site)",
    )
