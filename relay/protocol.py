"""Wire messages between core, relay and agent: strict schemas, and the signed auth handshake.

Every JSON message is checked against a schema before anything reads it: unknown fields, missing
fields, wrong types or oversized values raise RelayProtocolError. Hostile input is refused, never
interpreted.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import asyncssh

from relay.errors import RelayProtocolError

VERSION = 1
MAX_CONTROL_MESSAGE = 64 * 1024
"""Control (JSON) messages are small; anything larger is refused unread."""
MAX_ADMIN_MESSAGE = 8 * 1024 * 1024
"""Admin-channel answers list every site (about 200 bytes each)."""
MAX_DATA_MESSAGE = 1024 * 1024
"""Websocket message limit: session messages carry up to ~256 KiB of SSH bytes."""
NONCE_BYTES = 32
AUTH_CONTEXT = b"mssp-relay-auth/1\n"

_SITE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}(/[A-Za-z0-9][A-Za-z0-9._-]{0,62})?$")
_SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
_REASON_RE = re.compile(r"^[\x20-\x7e]{0,200}$")

Validator = Callable[[Any], Any]


def b64u(data: bytes) -> str:
    """URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64u(text: str, *, size: int | None = None, what: str = "value") -> bytes:
    """Strictly decode URL-safe base64 (no padding); optionally require an exact byte length."""
    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise RelayProtocolError(f"{what}: not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise RelayProtocolError(f"{what}: not base64url") from None
    if size is not None and len(data) != size:
        raise RelayProtocolError(f"{what}: expected {size} bytes, got {len(data)}")
    if b64u(data) != text:
        raise RelayProtocolError(f"{what}: non-canonical base64url")
    return data


def site_id(value: Any) -> str:
    """A site id: 1-2 slash-separated slugs of letters, digits, '.', '_', '-' (no '..')."""
    if not isinstance(value, str) or not _SITE_RE.match(value) or ".." in value:
        raise RelayProtocolError("invalid site id")
    return value


def session_id(value: Any) -> str:
    if not isinstance(value, str) or not _SESSION_RE.match(value):
        raise RelayProtocolError("invalid session id")
    return value


def reason(value: Any) -> str:
    if not isinstance(value, str) or not _REASON_RE.match(value):
        raise RelayProtocolError("invalid reason text")
    return value


def ed25519_public_key(value: Any) -> str:
    """An OpenSSH ``ssh-ed25519`` public key line; returned normalised (no comment)."""
    if not isinstance(value, str) or len(value) > 200 or not value.startswith("ssh-ed25519 "):
        raise RelayProtocolError("expected an ssh-ed25519 public key")
    try:
        key = asyncssh.import_public_key(value)
    except (asyncssh.KeyImportError, ValueError):
        raise RelayProtocolError("unparseable ssh-ed25519 public key") from None
    return normalise_key(key)


def normalise_key(key: asyncssh.SSHKey) -> str:
    """``ssh-ed25519 AAAA...`` without a comment: the form stored and compared everywhere."""
    algorithm, blob = key.export_public_key("openssh").decode("ascii").split()[:2]
    return f"{algorithm} {blob}"


def b64_field(size: int | None = None, max_len: int = 4096) -> Validator:
    def check(value: Any) -> str:
        if not isinstance(value, str) or len(value) > max_len:
            raise RelayProtocolError("invalid base64url field")
        unb64u(value, size=size)
        return value

    return check


def integer(lo: int, hi: int) -> Validator:
    def check(value: Any) -> int:
        if type(value) is not int or not lo <= value <= hi:
            raise RelayProtocolError(f"integer out of range [{lo}, {hi}]")
        return value

    return check


def number(lo: float, hi: float) -> Validator:
    def check(value: Any) -> float:
        if type(value) not in (int, float) or not lo <= value <= hi:
            raise RelayProtocolError(f"number out of range [{lo}, {hi}]")
        return float(value)

    return check


def boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise RelayProtocolError("expected a boolean")
    return value


def one_of(*choices: str) -> Validator:
    def check(value: Any) -> str:
        if value not in choices:
            raise RelayProtocolError(f"expected one of {', '.join(choices)}")
        return value

    return check


def optional(inner: Validator) -> Validator:
    def check(value: Any) -> Any:
        return None if value is None else inner(value)

    return check


Schema = Mapping[str, Validator]

# Handshake (both ends of every websocket).
CHALLENGE: Schema = {"t": one_of("challenge"), "v": integer(1, 1), "nonce": b64_field(NONCE_BYTES)}
HELLO: Schema = {
    "t": one_of("hello"),
    "site": optional(site_id),
    "session": optional(session_id),
    "key": optional(ed25519_public_key),
    "sig": b64_field(max_len=400),
}
WELCOME: Schema = {"t": one_of("ok")}
REFUSAL: Schema = {
    "t": one_of("error"),
    "code": one_of(
        *("auth", "revoked", "offline", "busy", "timeout", "protocol", "rate", "draining")
    ),
    "reason": reason,
}

# Relay -> agent on the control channel, and the agent's answers.
OPEN: Schema = {"t": one_of("open"), "session": session_id}
PING: Schema = {"t": one_of("ping"), "n": integer(0, 2**53)}
PONG: Schema = {"t": one_of("pong"), "n": integer(0, 2**53)}
DRAINING: Schema = {"t": one_of("draining")}

# Agent enrolment (POST /v1/join body).
JOIN: Schema = {
    "site": site_id,
    "admission": b64_field(32),
    "agent_key": ed25519_public_key,
    "proof": b64_field(32),
}

# Core control channel: requests, replies, pushed presence.
REQUEST: Mapping[str, Schema] = {
    "register": {
        "t": one_of("req"),
        "id": integer(0, 2**53),
        "op": one_of("register"),
        "site": site_id,
        "admission_hash": b64_field(32),
        "expires_at": number(0, 2**40),
    },
    "revoke": {
        "t": one_of("req"),
        "id": integer(0, 2**53),
        "op": one_of("revoke"),
        "site": site_id,
    },
    "enrolment": {
        "t": one_of("req"),
        "id": integer(0, 2**53),
        "op": one_of("enrolment"),
        "site": site_id,
    },
    "presence": {"t": one_of("req"), "id": integer(0, 2**53), "op": one_of("presence")},
    "watch": {"t": one_of("req"), "id": integer(0, 2**53), "op": one_of("watch")},
}
RESPONSE: Schema = {
    "t": one_of("res"),
    "id": integer(0, 2**53),
    "ok": boolean,
    "error": optional(reason),
    "data": lambda v: v,  # data is checked per op by the client
}
ENROLMENT: Schema = {
    "site": site_id,
    "agent_key": optional(ed25519_public_key),
    "proof": optional(b64_field(32)),
    "joined_at": optional(number(0, 2**40)),
    "revoked": boolean,
}
PRESENCE: Schema = {
    "site": site_id,
    "online": boolean,
    "since": optional(number(0, 2**40)),
    "last_seen": optional(number(0, 2**40)),
    "rtt_ms": optional(number(0, 10**7)),
    "sessions": integer(0, 10**6),
    "draining": boolean,
}
PRESENCE_EVENT: Schema = {"t": one_of("presence"), **PRESENCE}


def check(message: Any, schema: Schema, what: str) -> dict[str, Any]:
    """Validate a decoded message: exactly the schema's fields (None-able ones may be absent)."""
    if not isinstance(message, dict):
        raise RelayProtocolError(f"{what}: expected a JSON object")
    extra = set(message) - set(schema)
    if extra:
        raise RelayProtocolError(f"{what}: unexpected field(s) {', '.join(sorted(extra))[:100]}")
    out: dict[str, Any] = {}
    for name, validator in schema.items():
        try:
            out[name] = validator(message.get(name))
        except RelayProtocolError as exc:
            raise RelayProtocolError(f"{what}: field {name!r}: {exc}") from None
    return out


def loads(text: str | bytes, what: str) -> Any:
    """``json.loads`` for untrusted text: any failure is a RelayProtocolError.

    Besides malformed JSON that covers what json.loads raises on hostile but well-formed input:
    RecursionError on deep nesting (``[[[[…``, a few KB) and ValueError on an integer of more
    than 4,300 digits.
    """
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise RelayProtocolError(f"{what}: not JSON") from None


def decode(
    text: str | bytes, schema: Schema, what: str, *, limit: int = MAX_CONTROL_MESSAGE
) -> dict[str, Any]:
    """Parse one JSON control message and validate it."""
    if len(text) > limit:
        raise RelayProtocolError(f"{what}: message too large")
    return check(loads(text, what), schema, what)


def encode(message: Mapping[str, Any]) -> str:
    return json.dumps({k: v for k, v in message.items() if v is not None}, separators=(",", ":"))


def kind(text: str | bytes, *, limit: int = MAX_CONTROL_MESSAGE) -> str:
    """The ``t`` field of a control message (for dispatch); validation still follows."""
    try:
        message = loads(text, "control message") if len(text) <= limit else None
    except RelayProtocolError:
        message = None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise RelayProtocolError("control message without a type")
    return message["t"]


def auth_payload(
    endpoint: str, nonce: str, relay_pin: str, *, site: str | None, session: str | None
) -> bytes:
    """What a peer signs to prove its key to the relay: bound to endpoint, nonce and relay cert."""
    fields = [endpoint, site or "", session or "", nonce, relay_pin]
    return AUTH_CONTEXT + "\n".join(fields).encode("ascii")


def sign(key: asyncssh.SSHKey, payload: bytes) -> str:
    return b64u(key.sign(payload, b"ssh-ed25519"))


def verify(public_key: str, payload: bytes, signature: str) -> bool:
    """True iff ``signature`` is ``public_key``'s signature of ``payload``."""
    try:
        key = asyncssh.import_public_key(public_key)
        return bool(key.verify(payload, unb64u(signature, what="signature")))
    except (asyncssh.KeyImportError, RelayProtocolError, ValueError):
        return False
