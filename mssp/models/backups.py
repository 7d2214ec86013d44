"""Backup verification history (BackupCheck) and the daemon's schedules (Schedule)."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class BackupCheck(Model):
    """One verification of one host's backup: the verdict and its evidence, kept as history."""

    id = fields.IntField(primary_key=True)
    #: full inventory name client/site/host (kept if the host is deleted: this is history)
    host_name = fields.CharField(max_length=255, db_index=True)
    client_slug = fields.CharField(max_length=64, db_index=True)
    #: VERIFIED, STALE, CORRUPT, UNVERIFIABLE, NOT_RUN
    state = fields.CharField(max_length=16)
    reason = fields.TextField(default="")
    #: mssp.backups.evidence.Evidence as JSON ({} when the host could not be reached)
    evidence = fields.JSONField(default=dict)
    checked_at = fields.DatetimeField()
    #: the run and host run it came from (no foreign keys: deleting runs keeps the history)
    run_id = fields.IntField(null=True)
    host_run_id = fields.IntField(null=True, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "backup_check"


class Schedule(Model):
    """A task run on a cron schedule by `mssp daemon`."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64, unique=True)
    cron = fields.CharField(max_length=128)
    timezone = fields.CharField(max_length=64, default="UTC")
    task = fields.CharField(max_length=64)
    target = fields.TextField()
    params = fields.JSONField(default=dict)
    #: mssp.engine.RunOptions as JSON
    options = fields.JSONField(default=dict)
    enabled = fields.BooleanField(default=True)
    #: planned time of the last run started (or the creation time): the missed-run policy's anchor
    last_planned = fields.DatetimeField()
    last_run_id = fields.IntField(null=True)
    last_started_at = fields.DatetimeField(null=True)
    last_finished_at = fields.DatetimeField(null=True)
    #: the last run started more than the grace period after its planned time
    last_late = fields.BooleanField(default=False)
    #: planned times folded into the last run (a laptop asleep over several)
    last_missed = fields.IntField(default=0)
    last_error = fields.TextField(default="")
    #: the lock: set while a run of this schedule is in flight, by the process that owns it
    running = fields.BooleanField(default=False)
    running_owner = fields.CharField(max_length=128, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "schedule"
