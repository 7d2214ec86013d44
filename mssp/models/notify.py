"""Notification incidents: one row per open problem, so each is announced once and cleared once."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Incident(Model):
    """A problem that was (or is) announced: a backup not VERIFIED, a failed run, an agent down."""

    id = fields.IntField(primary_key=True)
    #: stable identity of the problem, e.g. "backup:acme/main/fs01"
    key = fields.CharField(max_length=255)
    client = fields.CharField(max_length=64, default="")
    #: backup, run, agent, ...
    kind = fields.CharField(max_length=32)
    subject = fields.TextField()
    opened_at = fields.DatetimeField()
    last_seen = fields.DatetimeField()
    closed_at = fields.DatetimeField(null=True)
    #: delivery results as text for the history ("sent to 2 of 2 targets")
    open_delivery = fields.TextField(default="")
    close_delivery = fields.TextField(default="")

    class Meta:
        table = "incident"
