"""The audit table: append-only, hash-chained entries (see mssp/audit.py)."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class AuditEntry(Model):
    """One privileged action. ``hash`` covers ``prev_hash`` and the entry's canonical form."""

    id = fields.IntField(primary_key=True)
    seq = fields.IntField(unique=True)
    #: ISO 8601 UTC time with microseconds, kept as text so the canonical form is byte-stable
    at = fields.CharField(max_length=40)
    actor = fields.CharField(max_length=128)
    action = fields.CharField(max_length=64)
    client = fields.CharField(max_length=64, default="")
    target = fields.TextField(default="")
    #: canonical JSON text (sorted keys), never a secret
    detail = fields.TextField(default="{}")
    #: ok, failed, refused, intent, ...
    result = fields.CharField(max_length=32)
    #: for an outcome entry: the seq of the intent it completes
    intent_seq = fields.IntField(null=True)
    prev_hash = fields.CharField(max_length=64)
    hash = fields.CharField(max_length=64)

    class Meta:
        table = "audit_entry"
