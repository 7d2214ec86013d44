"""Parameter validators for tasks: refuse any value a POSIX shell or PowerShell would interpret.

Each validator takes the already-typed value and raises ParameterError naming the problem; they
are used as ``Param(validate=...)`` so a bad value stops the run before any host is contacted.
The allowed alphabets are deliberately narrow (no quotes, ``$``, backticks, ``;``, ``|``, ``&``,
parentheses, ``@``, whitespace or control characters), and values that must still reach a shell
command line are additionally quoted with ``shlex.quote``; Windows tasks never splice values into
script text at all (they travel as JSON on stdin).
"""

from __future__ import annotations

import base64
import re
import shlex
from collections.abc import Callable, Iterable
from typing import Any

from mssp.errors import ParameterError

# Linux: what shadow-utils' useradd accepts by default (NAME_REGEX), at most 32 characters.
_LINUX_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# Windows SAM account names: at most 20 characters; we allow the safe subset only.
_WINDOWS_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,19}")
_GROUP = re.compile(r"[A-Za-z_][A-Za-z0-9_. -]{0,63}")
# Debian (policy 5.6.1) and RPM package names; "*" only in exclusion patterns (matched locally).
_PACKAGE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")
_PACKAGE_PATTERN = re.compile(r"[A-Za-z0-9_*?][A-Za-z0-9_.+*?-]{0,127}")
_SERVICE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@:-]{0,127}")
_PATH_PART = re.compile(r"[A-Za-z0-9_.+@,=-]+")
_KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
_KEY_COMMENT = re.compile(r"[A-Za-z0-9_.@+=:/-]{0,100}")
_CREDENTIAL = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}(/[a-z0-9][a-z0-9_.-]{0,63})?")


def _shown(value: Any) -> str:
    """The value for an error message: repr (escapes control characters), shortened."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _matching(pattern: re.Pattern[str], what: str, hint: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ParameterError(f"{_shown(value)} is not a valid {what} ({hint})")

    check.__name__ = f"check_{what.replace(' ', '_')}"
    return check


linux_user = _matching(
    _LINUX_USER, "user name", "lower-case letters, digits, '_' and '-', at most 32"
)
windows_user = _matching(_WINDOWS_USER, "Windows user name", "letters, digits, '_.-', at most 20")
package = _matching(_PACKAGE, "package name", "letters, digits and '.+_-'")
package_pattern = _matching(_PACKAGE_PATTERN, "package pattern", "a package name, '*' and '?'")
service = _matching(_SERVICE, "service name", "letters, digits and '_.@:-'")
group = _matching(_GROUP, "group name", "letters, digits, spaces and '_.-'")
credential_name = _matching(
    _CREDENTIAL, "credential name", "a vault credential name, optionally client/name"
)


def user(value: Any) -> None:
    """A name valid as a local account on Linux or Windows (both sets of rules must hold)."""
    if not isinstance(value, str) or not (
        _LINUX_USER.fullmatch(value) or _WINDOWS_USER.fullmatch(value)
    ):
        raise ParameterError(
            f"{_shown(value)} is not a valid user name (letters, digits, '_' and '-'; "
            "at most 32 on Linux and 20 on Windows)"
        )


def each(check: Callable[[Any], None]) -> Callable[[Any], None]:
    """Apply a validator to every element of a list parameter."""

    def check_all(values: Any) -> None:
        for value in values:
            check(value)

    return check_all


def linux_groups(values: Iterable[str]) -> None:
    for value in values:
        if not _LINUX_USER.fullmatch(value):
            raise ParameterError(f"{_shown(value)} is not a valid Linux group name")


def absolute_path(value: Any) -> None:
    """A POSIX absolute path made of safe characters only, without '..' components."""
    if not isinstance(value, str) or not value.startswith("/") or len(value) > 1024:
        raise ParameterError(f"{_shown(value)} is not an absolute path")
    for part in value.strip("/").split("/"):
        if part in ("", ".", "..") and value != "/":
            raise ParameterError(f"{_shown(value)}: empty, '.' or '..' path component")
        if part and not _PATH_PART.fullmatch(part):
            raise ParameterError(f"{_shown(value)}: path component {part!r} has unsafe characters")


def ssh_public_key(value: Any) -> None:
    """One OpenSSH public key line: type, base64 body, optional plain comment. No options."""
    if not isinstance(value, str) or "\n" in value or "\r" in value or "\x00" in value:
        raise ParameterError("the SSH public key must be a single line")
    parts = value.strip().split(" ")
    if len(parts) not in (2, 3) or parts[0] not in _KEY_TYPES:
        raise ParameterError(
            "the SSH public key must be '<type> <base64> [comment]' with a known key type "
            "(options such as command= are not accepted)"
        )
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        raise ParameterError("the SSH public key's body is not valid base64") from None
    # The blob starts with the key type as an SSH string: a cheap proof it is a key of that type.
    if blob[4 : 4 + len(parts[0])] != parts[0].encode():
        raise ParameterError("the SSH public key's body does not match its type")
    if len(parts) == 3 and not _KEY_COMMENT.fullmatch(parts[2]):
        raise ParameterError("the SSH public key's comment has unsafe characters")


def normalise_key(value: str) -> str:
    """A validated key as it is written to authorized_keys (single spaces, no trailing blank)."""
    return " ".join(value.strip().split(" "))


def key_identity(line: str) -> str:
    """'<type> <base64>' of an authorized_keys line (comment and options ignored) or ''."""
    parts = line.split()
    for i, part in enumerate(parts[:-1]):
        if part in _KEY_TYPES:
            return f"{part} {parts[i + 1]}"
    return ""


def script_argument(value: Any) -> None:
    """An argument handed to a script: any printable text, but no NUL, newline or CR."""
    if not isinstance(value, str) or any(ch in value for ch in "\x00\n\r"):
        raise ParameterError(f"script argument {_shown(value)} must be one line without NUL")


def quote(value: str) -> str:
    """Quote one word for a POSIX shell (after validation: defence in depth)."""
    return shlex.quote(value)


def quote_all(values: Iterable[str]) -> str:
    return " ".join(shlex.quote(v) for v in values)
