"""Inventory tables: Client → Site → Host, credentials (vault ciphertexts), host keys, facts."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Client(Model):
    """A business the consultant looks after."""

    id = fields.IntField(primary_key=True)
    slug = fields.CharField(max_length=64, unique=True)
    name = fields.CharField(max_length=200)
    timezone = fields.CharField(max_length=64, default="UTC")
    notes = fields.TextField(default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    sites: fields.ReverseRelation[Site]

    class Meta:
        table = "client"


class Site(Model):
    """A location or network of a client. Hosts are reached directly or through the site's agent."""

    id = fields.IntField(primary_key=True)
    client: fields.ForeignKeyRelation[Client] = fields.ForeignKeyField(
        "models.Client", related_name="sites", on_delete=fields.RESTRICT
    )
    slug = fields.CharField(max_length=64)
    name = fields.CharField(max_length=200)
    #: "direct" or "relay": the default path to this site's hosts
    reach = fields.CharField(max_length=16, default="direct")
    created_at = fields.DatetimeField(auto_now_add=True)

    hosts: fields.ReverseRelation[Host]

    class Meta:
        table = "site"
        unique_together = (("client", "slug"),)


class Credential(Model):
    """A secret in the vault: ciphertext only. Bound to its row id, field and key version (AAD)."""

    id = fields.IntField(primary_key=True)
    client: fields.ForeignKeyNullableRelation[Client] = fields.ForeignKeyField(
        "models.Client", related_name="credentials", null=True, on_delete=fields.RESTRICT
    )
    name = fields.CharField(max_length=128)
    #: "ssh-key", "password", "token"
    kind = fields.CharField(max_length=16)
    username = fields.CharField(max_length=128, default="")
    #: public half of an SSH key (not secret), for display and authorized_keys
    public_key = fields.TextField(default="")
    ciphertext = fields.BinaryField(null=True)
    key_version = fields.IntField(default=1)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "credential"
        unique_together = (("client", "name"),)


class Host(Model):
    """A server or workstation."""

    id = fields.IntField(primary_key=True)
    site: fields.ForeignKeyRelation[Site] = fields.ForeignKeyField(
        "models.Site", related_name="hosts", on_delete=fields.RESTRICT
    )
    name = fields.CharField(max_length=128)
    address = fields.CharField(max_length=255)
    port = fields.IntField(default=22)
    username = fields.CharField(max_length=128, default="root")
    #: "ssh" or "winrm"
    transport = fields.CharField(max_length=16, default="ssh")
    #: "direct", "relay" or "site" (follow the site's reach)
    via = fields.CharField(max_length=16, default="site")
    credential: fields.ForeignKeyNullableRelation[Credential] = fields.ForeignKeyField(
        "models.Credential", related_name="hosts", null=True, on_delete=fields.SET_NULL
    )
    become_credential: fields.ForeignKeyNullableRelation[Credential] = fields.ForeignKeyField(
        "models.Credential", related_name="become_hosts", null=True, on_delete=fields.SET_NULL
    )
    #: comma-separated, sorted, lower-case tags (JSON lookups do not work on SQLite)
    tags = fields.TextField(default="")
    #: transport options (winrm scheme, auth, certificate pin, ...)
    options = fields.JSONField(default=dict)
    os_family = fields.CharField(max_length=32, default="")
    last_seen = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "host"
        unique_together = (("site", "name"),)


class HostKey(Model):
    """A pinned SSH host key (or a trusted host CA key) for one host."""

    id = fields.IntField(primary_key=True)
    host: fields.ForeignKeyRelation[Host] = fields.ForeignKeyField(
        "models.Host", related_name="host_keys", on_delete=fields.CASCADE
    )
    algorithm = fields.CharField(max_length=64)
    public_key = fields.TextField()
    fingerprint = fields.CharField(max_length=128)
    is_ca = fields.BooleanField(default=False)
    first_seen = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "host_key"


class Fact(Model):
    """The latest facts gathered from a host (OS, updates pending, disk, users...)."""

    id = fields.IntField(primary_key=True)
    host: fields.ForeignKeyRelation[Host] = fields.ForeignKeyField(
        "models.Host", related_name="facts", on_delete=fields.CASCADE
    )
    data = fields.JSONField(default=dict)
    collected_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "fact"
