"""Run tables: a Run is one task over a target selection; a HostRun is its state on one host."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Run(Model):
    """One task over a target selection, with the options it was started with."""

    id = fields.IntField(primary_key=True)
    task = fields.CharField(max_length=64)
    target = fields.TextField()
    params = fields.JSONField(default=dict)
    options = fields.JSONField(default=dict)
    #: queued, running, finished, halted, cancelled, interrupted
    state = fields.CharField(max_length=16, default="queued")
    check_mode = fields.BooleanField(default=False)
    retry_of: fields.ForeignKeyNullableRelation[Run] = fields.ForeignKeyField(
        "models.Run", related_name="retries", null=True, on_delete=fields.SET_NULL
    )
    #: who started it (user@machine) and which process owns it now (for crash reconciliation)
    started_by = fields.CharField(max_length=128, default="")
    owner = fields.CharField(max_length=128, default="")
    message = fields.TextField(default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)

    host_runs: fields.ReverseRelation[HostRun]

    class Meta:
        table = "run"


class HostRun(Model):
    """One host's part of a run. State is committed before the work it describes."""

    id = fields.IntField(primary_key=True)
    run: fields.ForeignKeyRelation[Run] = fields.ForeignKeyField(
        "models.Run", related_name="host_runs", on_delete=fields.CASCADE
    )
    host: fields.ForeignKeyNullableRelation = fields.ForeignKeyField(
        "models.Host", related_name="host_runs", null=True, on_delete=fields.SET_NULL
    )
    #: full inventory name client/site/host, kept if the host is deleted
    host_name = fields.CharField(max_length=255)
    client_slug = fields.CharField(max_length=64)
    wave = fields.IntField(default=0)
    #: queued, running, ok, changed, failed, unreachable, timeout, skipped, cancelled,
    #: expired, interrupted
    state = fields.CharField(max_length=16, default="queued")
    attempts = fields.IntField(default=0)
    exit_status = fields.IntField(null=True)
    stdout = fields.TextField(default="")
    stderr = fields.TextField(default="")
    truncated = fields.BooleanField(default=False)
    error = fields.TextField(default="")
    result = fields.JSONField(default=dict)
    queued_until = fields.DatetimeField(null=True)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "host_run"
        unique_together = (("run", "host_name"),)


class HostLock(Model):
    """'One run per host at a time' as a fact in the database: a row per busy host."""

    host_name = fields.CharField(max_length=255, primary_key=True)
    run: fields.ForeignKeyRelation[Run] = fields.ForeignKeyField(
        "models.Run", related_name="locks", on_delete=fields.CASCADE
    )
    owner = fields.CharField(max_length=128)
    acquired_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "host_lock"
