"""Join tokens: issue (core side), parse and strictly validate (agent side), and the key proof.

Format: ``mssp-join1.<base64url(JSON || 4-byte SHA-256 check)>``. The check catches truncation and
typos with a clear message before anything else is read. The relay only ever sees the admission
secret (and stores its hash); the binding secret stays between core and agent and keys the HMAC
that proves the agent's host key to the core.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from relay import protocol, tls
from relay.errors import ConfigError, ImpersonationError, RelayProtocolError, TokenError

PREFIX = "mssp-join1."
DEFAULT_TTL = 30 * 60
MAX_TTL = 7 * 24 * 3600
MAX_TOKEN_LEN = 2048
_ADMISSION_CONTEXT = b"mssp-admission/1\n"
_PROOF_CONTEXT = b"mssp-agent-hostkey/1\n"
_FIELDS = ("v", "relay", "pin", "site", "adm", "bind", "core", "exp")


@dataclass(frozen=True)
class JoinToken:
    """A parsed, validated join token."""

    relay_url: str
    """Base URL of the relay, ``wss://host:port``."""
    relay_pin: str
    """``sha256:<hex>`` of the relay's DER certificate."""
    site_id: str
    admission_secret: bytes = field(repr=False)
    """Shown to the relay once, at join; it stores only the hash."""
    binding_secret: bytes = field(repr=False)
    """Never leaves core and agent; keys the host-key proof."""
    core_public_key: str
    """The only SSH client key the agent authorises."""
    expires_at: int


@dataclass(frozen=True)
class IssuedToken:
    """What the core keeps after issuing a token (the token text itself is shown once)."""

    token: str = field(repr=False)
    site_id: str
    admission_hash: str
    """base64url SHA-256 of the admission secret: registered at the relay."""
    binding_secret: bytes = field(repr=False)
    """Kept by the core (encrypted) to verify the agent's proof later."""
    expires_at: int


def validate_relay_url(url: str) -> str:
    """``wss://host[:port]`` with nothing else (no path, query, credentials)."""
    if not isinstance(url, str) or len(url) > 255:
        raise ConfigError("relay URL must be wss://host[:port]")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("relay URL has an invalid port") from None
    if (
        parts.scheme != "wss"
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or (port is not None and not 0 < port < 65536)
    ):
        raise ConfigError("relay URL must be wss://host[:port]")
    return url.rstrip("/")


def admission_hash(secret: bytes) -> str:
    """How the relay stores an admission secret."""
    return protocol.b64u(hashlib.sha256(_ADMISSION_CONTEXT + secret).digest())


def key_proof(binding_secret: bytes, site_id: str, agent_public_key: str) -> str:
    """HMAC-SHA256 under the binding secret over the site and the agent's host key."""
    message = _PROOF_CONTEXT + f"{site_id}\n{agent_public_key}".encode("ascii")
    return protocol.b64u(hmac.new(binding_secret, message, hashlib.sha256).digest())


def verify_key_proof(
    binding_secret: bytes, site_id: str, agent_public_key: str | None, proof: str | None
) -> str:
    """Return the agent key if ``proof`` is valid for it, else raise ImpersonationError."""
    if not agent_public_key or not proof:
        raise ImpersonationError(f"site {site_id}: no agent has enrolled yet")
    try:
        key = protocol.ed25519_public_key(agent_public_key)
    except RelayProtocolError:
        raise ImpersonationError(f"site {site_id}: the relay returned a malformed key") from None
    expected = key_proof(binding_secret, site_id, key)
    if not hmac.compare_digest(expected, proof):
        raise ImpersonationError(
            f"site {site_id}: the agent key held by the relay is not the one the agent proved "
            "(possible relay impersonation); refusing to connect"
        )
    return key


def issue(
    relay_url: str,
    relay_pin: str,
    site_id: str,
    core_public_key: str,
    *,
    ttl: int = DEFAULT_TTL,
    now: float | None = None,
) -> IssuedToken:
    """Make a new single-use token for ``site_id`` (core side)."""
    if not 60 <= ttl <= MAX_TTL:
        raise ConfigError(f"token lifetime must be between 60 s and {MAX_TTL} s")
    try:
        site = protocol.site_id(site_id)
        core_key = protocol.ed25519_public_key(core_public_key)
    except RelayProtocolError as exc:
        raise ConfigError(str(exc)) from None
    admission, binding = secrets.token_bytes(32), secrets.token_bytes(32)
    expires_at = int((time.time() if now is None else now) + ttl)
    body = {
        "v": 1,
        "relay": validate_relay_url(relay_url),
        "pin": tls.validate_pin(relay_pin),
        "site": site,
        "adm": protocol.b64u(admission),
        "bind": protocol.b64u(binding),
        "core": core_key,
        "exp": expires_at,
    }
    payload = json.dumps(body, separators=(",", ":")).encode()
    text = PREFIX + protocol.b64u(payload + hashlib.sha256(payload).digest()[:4])
    return IssuedToken(text, site, admission_hash(admission), binding, expires_at)


def parse(text: str, *, now: float | None = None, check_expiry: bool = True) -> JoinToken:
    """Parse and strictly validate a token; TokenError with a clear reason on anything wrong."""
    if not isinstance(text, str):
        raise TokenError("a join token is text")
    text = text.strip()
    if len(text) > MAX_TOKEN_LEN:
        raise TokenError("this is not a join token (too long)")
    if not text.startswith(PREFIX):
        raise TokenError(f"this is not a join token (it should start with {PREFIX!r})")
    try:
        raw = protocol.unb64u(text[len(PREFIX) :], what="token")
    except RelayProtocolError:
        raise TokenError("join token is damaged (not base64url); copy it again") from None
    payload, check = raw[:-4], raw[-4:]
    if len(raw) < 8 or hashlib.sha256(payload).digest()[:4] != check:
        raise TokenError("join token is damaged or truncated (checksum mismatch); copy it again")
    try:
        body = protocol.loads(payload, "join token")
    except RelayProtocolError:
        raise TokenError("join token is damaged (not JSON)") from None
    if not isinstance(body, dict) or set(body) != set(_FIELDS) or body.get("v") != 1:
        raise TokenError("join token has an unknown version or layout")
    try:
        token = JoinToken(
            relay_url=validate_relay_url(body["relay"]),
            relay_pin=tls.validate_pin(body["pin"]),
            site_id=protocol.site_id(body["site"]),
            admission_secret=protocol.unb64u(body["adm"], size=32, what="admission secret"),
            binding_secret=protocol.unb64u(body["bind"], size=32, what="binding secret"),
            core_public_key=protocol.ed25519_public_key(body["core"]),
            expires_at=protocol.integer(0, 2**40)(body["exp"]),
        )
    except (RelayProtocolError, ConfigError) as exc:
        raise TokenError(f"join token is invalid: {exc}") from None
    if check_expiry and token.expires_at <= (time.time() if now is None else now):
        raise TokenError("join token has expired; ask for a new one (mssp site enroll)")
    return token
