"""Relay messages and join tokens are hostile input: fuzzed, they give only the documented error.

relay/protocol.py documents RelayProtocolError for every malformed control message, relay/token.py
documents TokenError for every unusable join token, and relay/handshake.py turns every relay
refusal into one typed RelayError. Hypothesis throws text, bytes, near-valid JSON built from each
schema's own field names, and mutated real tokens at them; anything else escaping (KeyError,
TypeError, AttributeError, UnicodeError...) is a bug: a crash an attacker at the relay, or a
compromised relay, could trigger at will.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import asyncssh
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from relay import handshake, protocol
from relay import token as join_token
from relay.errors import RelayError, RelayProtocolError, TokenError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SCHEMAS: dict[str, protocol.Schema] = {
    "challenge": protocol.CHALLENGE,
    "hello": protocol.HELLO,
    "welcome": protocol.WELCOME,
    "refusal": protocol.REFUSAL,
    "open": protocol.OPEN,
    "ping": protocol.PING,
    "pong": protocol.PONG,
    "draining": protocol.DRAINING,
    "join": protocol.JOIN,
    "response": protocol.RESPONSE,
    "enrolment": protocol.ENROLMENT,
    "presence": protocol.PRESENCE_EVENT,
    **{f"request-{op}": schema for op, schema in protocol.REQUEST.items()},
}
KEY = protocol.normalise_key(asyncssh.generate_private_key("ssh-ed25519"))

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=60),
    st.sampled_from(
        [
            KEY,
            "ssh-ed25519 AAAA",
            "ssh-ed25519 " + "A" * 180,
            "acme/hq",
            "../x",
            "a" * 40,
            protocol.b64u(b"\0" * 32),
            "ping",
            "hello",
            "error",
            "auth",
            "req",
            "register",
        ]
    ),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def near_valid(schema: protocol.Schema) -> st.SearchStrategy[dict[str, Any]]:
    """Objects using the schema's own field names (some dropped), with any values, maybe extras."""
    fields = st.fixed_dictionaries({}, optional={name: json_values for name in schema})
    extras = st.dictionaries(st.text(max_size=6), json_values, max_size=2)
    return st.tuples(fields, extras, st.booleans()).map(
        lambda t: {**t[0], **t[1]} if t[2] else t[0]
    )


@FUZZ
@given(
    st.sampled_from(sorted(SCHEMAS)),
    st.one_of(st.text(max_size=300), st.binary(max_size=300)),
)
def test_any_text_gives_a_message_or_a_protocol_error(name: str, text: str | bytes) -> None:
    try:
        out = protocol.decode(text, SCHEMAS[name], name)
    except RelayProtocolError:
        return
    assert set(out) == set(SCHEMAS[name])


@FUZZ
@given(st.data())
def test_near_valid_messages_give_a_message_or_a_protocol_error(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(SCHEMAS)))
    message = data.draw(near_valid(SCHEMAS[name]))
    text = json.dumps(message)
    try:
        out = protocol.decode(text, SCHEMAS[name], name)
    except RelayProtocolError:
        return
    # What passed is exactly the schema's fields, re-encodable, with no stranger inside.
    assert set(out) == set(SCHEMAS[name])
    protocol.encode(out)


@FUZZ
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200), json_values.map(json.dumps)))
def test_kind_gives_a_string_or_a_protocol_error(text: str | bytes) -> None:
    try:
        assert isinstance(protocol.kind(text), str)
    except RelayProtocolError:
        pass


@FUZZ
@given(
    st.one_of(
        st.text(max_size=200),
        near_valid(protocol.REFUSAL).map(json.dumps),
        st.fixed_dictionaries(
            {"t": st.just("error"), "code": st.sampled_from(["auth", "revoked", "busy", "x"])},
            optional={"reason": json_scalars},
        ).map(json.dumps),
    )
)
def test_every_relay_refusal_raises_one_typed_error(text: str) -> None:
    with pytest.raises(RelayError):
        handshake.raise_refusal(text, "fuzz")


@FUZZ
@given(st.text(max_size=120), st.binary(max_size=64), st.text(max_size=120))
def test_signature_check_is_a_boolean_for_any_input(key: str, payload: bytes, sig: str) -> None:
    assert protocol.verify(key, payload, sig) is False
    assert protocol.verify(KEY, payload, sig) is False


@FUZZ
@given(st.one_of(st.text(max_size=120), st.binary(max_size=90).map(protocol.b64u)))
def test_public_key_field_gives_a_key_or_a_protocol_error(blob: str) -> None:
    for value in (blob, "ssh-ed25519 " + blob):
        try:
            assert protocol.ed25519_public_key(value).startswith("ssh-ed25519 ")
        except RelayProtocolError:
            pass


@FUZZ
@given(st.text(max_size=200), st.one_of(st.none(), st.integers(0, 64)))
def test_base64_fields_decode_or_refuse(text: str, size: int | None) -> None:
    try:
        data = protocol.unb64u(text, size=size)
    except RelayProtocolError:
        return
    assert protocol.b64u(data) == text and (size is None or len(data) == size)


# ---- join tokens ------------------------------------------------------------------------------

PIN = "sha256:" + "ab" * 32
ISSUED = join_token.issue("wss://relay.example:8443", PIN, "acme/hq", KEY)
BODY = json.loads(protocol.unb64u(ISSUED.token[len(join_token.PREFIX) :])[:-4])


def _encode(payload: bytes) -> str:
    """A token whose checksum is right: what an attacker who read the format would send."""
    return join_token.PREFIX + protocol.b64u(payload + hashlib.sha256(payload).digest()[:4])


def _parse_or_token_error(text: Any) -> join_token.JoinToken | None:
    try:
        return join_token.parse(text)
    except TokenError:
        return None


ORIGINAL = join_token.parse(ISSUED.token)


@FUZZ
@given(st.one_of(st.text(max_size=400), st.text(max_size=300).map(join_token.PREFIX.__add__)))
def test_any_text_is_a_token_or_a_token_error(text: str) -> None:
    assert _parse_or_token_error(text) is None


@FUZZ
@given(st.data())
def test_mutated_tokens_are_refused_with_a_token_error(data: st.DataObject) -> None:
    text = ISSUED.token
    position = data.draw(st.integers(0, len(text) - 1))
    mutation = data.draw(st.sampled_from(["replace", "delete", "insert", "truncate"]))
    char = data.draw(st.characters(codec="ascii"))
    if mutation == "replace":
        assume(text[position] != char)
        text = text[:position] + char + text[position + 1 :]
    elif mutation == "delete":
        text = text[:position] + text[position + 1 :]
    elif mutation == "insert":
        text = text[:position] + char + text[position:]
    else:
        text = text[:position]
    # Only surrounding whitespace may be added or removed and leave the same token.
    assert _parse_or_token_error(text) in (None, ORIGINAL)


@FUZZ
@given(st.data())
def test_re_signed_token_bodies_give_a_token_or_a_token_error(data: st.DataObject) -> None:
    body = dict(BODY)
    for name in data.draw(st.lists(st.sampled_from(sorted(BODY)), max_size=3, unique=True)):
        body[name] = data.draw(json_values)
    if data.draw(st.booleans()):
        body.update(data.draw(st.dictionaries(st.text(max_size=5), json_values, max_size=2)))
    token = _parse_or_token_error(_encode(json.dumps(body).encode()))
    if token is not None:  # valid: then every field is exactly what the body said
        assert set(body) == set(BODY) and body["v"] == 1
        assert (token.site_id, token.relay_pin, token.expires_at) == (
            body["site"],
            body["pin"],
            body["exp"],
        )
        assert token.relay_url == body["relay"].rstrip("/")
        assert protocol.b64u(token.admission_secret) == body["adm"]


@FUZZ
@given(st.binary(max_size=600))
def test_checksummed_garbage_is_a_token_error(payload: bytes) -> None:
    assert _parse_or_token_error(_encode(payload)) is None


def test_non_text_tokens_are_a_token_error() -> None:
    for value in (None, 3, b"mssp-join1.x", ["x"]):
        with pytest.raises(TokenError):
            join_token.parse(value)  # type: ignore[arg-type]
