"""Join tokens: format, strict validation, expiry, and the host-key proof."""

from __future__ import annotations

import base64
import json
import time

import asyncssh
import pytest

from relay import protocol
from relay import token as join_token
from relay.errors import ImpersonationError, TokenError

PIN = "sha256:" + "ab" * 32
CORE = protocol.normalise_key(asyncssh.generate_private_key("ssh-ed25519"))


def issue(**kw):
    return join_token.issue("wss://relay.example:8443", PIN, "acme/hq", CORE, **kw)


def test_token_round_trip_and_compact():
    issued = issue()
    token = join_token.parse(issued.token)
    assert token.site_id == "acme/hq" and token.relay_pin == PIN
    assert token.core_public_key == CORE
    assert join_token.admission_hash(token.admission_secret) == issued.admission_hash
    assert token.binding_secret == issued.binding_secret
    assert 1700 < token.expires_at - time.time() <= 1800
    assert len(issued.token) < 600
    # secrets never show in reprs
    assert issued.token not in repr(issued) and "admission_secret" not in repr(token)


def _reencode(body: dict) -> str:
    payload = json.dumps(body).encode()
    import hashlib

    return join_token.PREFIX + protocol.b64u(payload + hashlib.sha256(payload).digest()[:4])


def _body(issued) -> dict:
    raw = protocol.unb64u(issued.token[len(join_token.PREFIX) :])
    return json.loads(raw[:-4])


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda t: "", "not a join token"),
        (lambda t: "hello world", "not a join token"),
        (lambda t: t[:-5], "damaged"),
        (lambda t: t[:40] + ("A" if t[40] != "A" else "B") + t[41:], "damaged"),
        (lambda t: t + "=", "damaged"),
        (lambda t: t.replace(join_token.PREFIX, "mssp-join2."), "not a join token"),
        (lambda t: join_token.PREFIX + base64.b64encode(b"x" * 50).decode(), "damaged"),
        (lambda t: "x" * 5000, "too long"),
    ],
)
def test_garbage_tokens_give_a_clear_error(mangle, message):
    with pytest.raises(TokenError, match=message):
        join_token.parse(mangle(issue().token))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("relay", "http://relay.example", "wss://"),
        ("relay", "wss://relay.example/path", "wss://"),
        ("relay", "wss://user:pw@relay.example", "wss://"),
        ("pin", "sha1:abcd", "pin"),
        ("site", "../etc", "site"),
        ("site", "a/b/c", "site"),
        ("adm", "short", "admission"),
        ("bind", protocol.b64u(b"x" * 31), "binding"),
        ("core", "ssh-rsa AAAAB3NzaC1yc2E", "ssh-ed25519"),
        ("exp", "tomorrow", "integer"),
        ("v", 2, "version"),
    ],
)
def test_invalid_token_fields_refused(field, value, message):
    body = _body(issue())
    body[field] = value
    with pytest.raises(TokenError, match=message):
        join_token.parse(_reencode(body))


def test_extra_or_missing_fields_refused():
    body = _body(issue())
    with pytest.raises(TokenError, match="layout"):
        join_token.parse(_reencode({**body, "cmd": "rm -rf /"}))
    body.pop("core")
    with pytest.raises(TokenError, match="layout"):
        join_token.parse(_reencode(body))


def test_expired_token_refused():
    issued = issue(ttl=60, now=time.time() - 120)
    with pytest.raises(TokenError, match="expired"):
        join_token.parse(issued.token)


def test_key_proof_binds_key_and_site():
    secret = b"s" * 32
    key = protocol.normalise_key(asyncssh.generate_private_key("ssh-ed25519"))
    other = protocol.normalise_key(asyncssh.generate_private_key("ssh-ed25519"))
    proof = join_token.key_proof(secret, "acme/hq", key)
    assert join_token.verify_key_proof(secret, "acme/hq", key, proof) == key
    for site, k, p, s in [
        ("acme/hq", other, proof, secret),
        ("acme/branch", key, proof, secret),
        ("acme/hq", key, proof, b"t" * 32),
        ("acme/hq", key, None, secret),
    ]:
        with pytest.raises(ImpersonationError):
            join_token.verify_key_proof(s, site, k, p)


def test_protocol_messages_are_strict():
    from relay.errors import RelayProtocolError

    good = '{"t":"ping","n":1}'
    assert protocol.decode(good, protocol.PING, "ping") == {"t": "ping", "n": 1}
    for bad in [
        '{"t":"ping","n":1,"x":2}',
        '{"t":"ping","n":"1"}',
        '{"t":"ping","n":true}',
        '{"t":"ping"}',
        "[1]",
        "not json",
        '{"t":"ping","n":' + "9" * 70000 + "}",
    ]:
        with pytest.raises(RelayProtocolError):
            protocol.decode(bad, protocol.PING, "ping")
