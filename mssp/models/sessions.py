"""The recording index: one row per recorded interactive session (the file is asciicast v2)."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Recording(Model):
    """One interactive session's recording. The host is kept by name so it outlives the host."""

    id = fields.IntField(primary_key=True)
    #: full inventory name client/site/host
    host_name = fields.CharField(max_length=255)
    client_slug = fields.CharField(max_length=64, default="")
    #: who ran the session (user@machine)
    actor = fields.CharField(max_length=128, default="")
    #: "ssh" (PTY shell) or "powershell" (line-based WinRM prompt)
    kind = fields.CharField(max_length=16, default="ssh")
    #: the command run instead of a login shell ("" for a shell)
    command = fields.TextField(default="")
    started_at = fields.DatetimeField()
    ended_at = fields.DatetimeField(null=True)
    #: the asciicast v2 file (under settings.data_dir/recordings/)
    path = fields.TextField()
    #: SHA-256 of the file as written, also in the audit entry ("" while recording)
    sha256 = fields.CharField(max_length=64, default="")
    bytes = fields.BigIntField(default=0)
    exit_status = fields.IntField(null=True)
    #: recording, finished, failed (the session could not run), incomplete (recording broke)
    state = fields.CharField(max_length=16, default="recording")
    #: the audit entry that opened the session
    audit_seq = fields.IntField(null=True)
    error = fields.TextField(default="")

    class Meta:
        table = "recording"
