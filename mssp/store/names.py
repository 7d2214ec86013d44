"""Validation of inventory names and fields: slugs, host names, tags, addresses, user names.

Names end up in target expressions (``client:acme,tag:web,!db*``), file paths and remote command
lines, so they are restricted to characters none of those interpret. Every failure is a
``UsageError`` (exit 2) naming the field; nothing is written.
"""

from __future__ import annotations

import re
import unicodedata
import zoneinfo
from collections.abc import Iterable, Mapping
from typing import Any

from mssp.errors import UsageError
from mssp.inventory import TRANSPORTS, VIA

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
HOST_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?$")
TAG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62})?$")
# DNS names, IPv4, IPv6 (with an optional %zone); never starting with "-" (option injection)
ADDRESS_RE = re.compile(
    r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,253})|\[?[0-9A-Fa-f:.]+(?:%[\w.-]+)?\]?)$"
)
USER_RE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.@\\$-]{0,127}$")
REACHES = ("direct", "relay")
CREDENTIAL_KINDS = ("ssh-key", "password", "token", "notify-url")


def slugify(text: str) -> str:
    """'Acme Dental GmbH' -> 'acme-dental-gmbh' (accents folded, other characters become '-')."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")
    return slug[:64].rstrip("-")


def check_slug(value: str, what: str) -> str:
    if not isinstance(value, str) or not SLUG_RE.match(value):
        raise UsageError(
            f"invalid {what} {value!r}: use lower-case letters, digits and '-' "
            "(1-64 characters, not starting or ending with '-')"
        )
    return value


def check_host_name(value: str) -> str:
    if not isinstance(value, str) or not HOST_RE.match(value):
        raise UsageError(
            f"invalid host name {value!r}: use lower-case letters, digits, '.', '_' and '-' "
            "(1-128 characters, starting and ending with a letter or digit)"
        )
    return value


def check_tags(tags: Iterable[str]) -> frozenset[str]:
    result = set()
    for tag in tags:
        tag = tag.strip().lower()
        if not TAG_RE.match(tag):
            raise UsageError(f"invalid tag {tag!r}: use lower-case letters, digits, '.', '_', '-'")
        result.add(tag)
    return frozenset(result)


def check_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"unknown time zone {value!r} (use an IANA name like Europe/Berlin)"
        ) from None
    return value


def check_address(value: str) -> str:
    if not isinstance(value, str) or not ADDRESS_RE.match(value) or len(value) > 255:
        raise UsageError(f"invalid address {value!r}: expected a host name or an IP address")
    return value.strip("[]")


def check_port(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise UsageError(f"invalid port {value!r}: expected 1-65535")
    return value


def check_username(value: str) -> str:
    if not isinstance(value, str) or not USER_RE.match(value):
        raise UsageError(f"invalid user name {value!r}")
    return value


def check_choice(value: str, choices: Iterable[str], what: str) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise UsageError(f"invalid {what} {value!r}: expected one of {', '.join(choices)}")
    return value


def check_transport(value: str) -> str:
    return check_choice(value, TRANSPORTS, "transport")


def check_via(value: str) -> str:
    return check_choice(value, VIA, "via")


def check_options(options: Mapping[str, Any] | None) -> dict[str, str]:
    """Transport options: string keys, scalar values kept as strings."""
    result: dict[str, str] = {}
    for key, value in (options or {}).items():
        if not isinstance(key, str) or not re.match(r"^[a-z0-9_.-]{1,64}$", key):
            raise UsageError(f"invalid option name {key!r}")
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, str | int | float):
            raise UsageError(f"option {key!r} must be a string or a number")
        result[key] = str(value)
    return result


def split_full_name(full_name: str, parts: int) -> list[str]:
    """'client/site/host' -> its parts; UsageError when the shape is wrong."""
    pieces = full_name.strip().split("/")
    if len(pieces) != parts or not all(pieces):
        shapes = {2: "CLIENT/SITE", 3: "CLIENT/SITE/HOST"}
        raise UsageError(f"expected {shapes.get(parts, parts)}, got {full_name!r}")
    return pieces
