"""Relay tables: the relay this core uses, and each relayed site's agent enrolment and presence.

Secrets are not here: the core's relay key and each site's binding secret are vault credentials
(``Credential`` rows), referenced by id. What is here is what the relay may know anyway (opaque
site ids, the agent's public host key) plus the consultant's own bookkeeping.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class RelayEndpoint(Model):
    """The relay this core dials (one row): its URL, its certificate pin and the core's key."""

    id = fields.IntField(primary_key=True)
    url = fields.CharField(max_length=255)
    #: sha256:<hex> of the relay's DER certificate (relay/tls.py)
    pin = fields.CharField(max_length=80)
    #: the vault credential holding the core's Ed25519 key for the relay
    core_credential: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.Credential", related_name="relay_endpoints", null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "relay_endpoint"


class SiteAgent(Model):
    """One site's agent: enrolment, the pinned agent host key, revocation and last presence."""

    id = fields.IntField(primary_key=True)
    site: fields.OneToOneRelation = fields.OneToOneField(
        "models.Site", related_name="agent", on_delete=fields.CASCADE
    )
    #: what the relay knows the site as: random, so the relay never learns client or site names
    relay_site_id = fields.CharField(max_length=64, unique=True)
    #: the vault credential holding this enrolment's binding secret
    binding_credential: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.Credential", related_name="site_agents", null=True, on_delete=fields.SET_NULL
    )
    #: the agent's host key, pinned once its proof verified ("" until the agent has joined)
    agent_key = fields.TextField(default="")
    token_issued_at = fields.DatetimeField()
    token_expires_at = fields.DatetimeField()
    joined_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)
    #: the last presence seen from the relay
    online = fields.BooleanField(default=False)
    online_since = fields.DatetimeField(null=True)
    last_seen = fields.DatetimeField(null=True)
    rtt_ms = fields.FloatField(null=True)
    presence_at = fields.DatetimeField(null=True)
    """When the presence fields were last written."""

    class Meta:
        table = "site_agent"
