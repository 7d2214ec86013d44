"""Relay state in the database: the endpoint, the core's key, each site's enrolment and presence.

Secrets (the core's relay key, each enrolment's binding secret) are vault credentials; rows here
hold only their ids, the opaque relay site ids, pinned agent keys and presence.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncssh

from mssp.errors import NotFoundError, RelayProtocolError, UsageError
from mssp.models.inventory import Credential, Site
from mssp.models.relay import RelayEndpoint, SiteAgent
from mssp.store import write_transaction
from mssp.store.credentials import add_credential, get_secret, replace_secret
from mssp.store.names import split_full_name
from mssp.vault import Vault

CORE_KEY_NAME = "relay-core-key"


@dataclass(frozen=True)
class Endpoint:
    """The relay this core uses."""

    url: str
    pin: str
    core_public_key: str


@dataclass(frozen=True)
class AgentRecord:
    """A site's agent as the core knows it (no secrets)."""

    client: str
    site: str
    relay_site_id: str
    agent_key: str
    token_issued_at: datetime
    token_expires_at: datetime
    joined_at: datetime | None
    revoked_at: datetime | None
    online: bool
    online_since: datetime | None
    last_seen: datetime | None
    rtt_ms: float | None
    presence_at: datetime | None
    binding_credential_id: int | None

    @property
    def full_name(self) -> str:
        return f"{self.client}/{self.site}"

    @property
    def status(self) -> str:
        """revoked, pending (token issued, no agent yet), online or offline."""
        if self.revoked_at is not None:
            return "revoked"
        if self.online:
            return "online"
        if not self.agent_key and self.joined_at is None and self.last_seen is None:
            return "pending"
        return "offline"


def _when(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _record(row: SiteAgent, client: str, site: str) -> AgentRecord:
    return AgentRecord(
        client=client,
        site=site,
        relay_site_id=row.relay_site_id,
        agent_key=row.agent_key,
        token_issued_at=row.token_issued_at,
        token_expires_at=row.token_expires_at,
        joined_at=row.joined_at,
        revoked_at=row.revoked_at,
        online=row.online,
        online_since=row.online_since,
        last_seen=row.last_seen,
        rtt_ms=row.rtt_ms,
        presence_at=row.presence_at,
        binding_credential_id=row.binding_credential_id,  # type: ignore[attr-defined]
    )


# ---- the endpoint and the core key ---------------------------------------------------------
async def get_endpoint() -> Endpoint | None:
    row = await RelayEndpoint.first()
    if row is None:
        return None
    cred = await Credential.get_or_none(id=row.core_credential_id)  # type: ignore[attr-defined]
    return Endpoint(row.url, row.pin, cred.public_key if cred else "")


async def ensure_core_key(vault: Vault) -> str:
    """The core's relay public key, creating the key (in the vault) on first use."""
    row = await Credential.get_or_none(client_id=None, name=CORE_KEY_NAME)
    if row is not None:
        return row.public_key
    key = asyncssh.generate_private_key("ssh-ed25519", comment="mssp-core")
    public = key.export_public_key().decode().strip()
    await add_credential(
        vault,
        client_slug=None,
        name=CORE_KEY_NAME,
        kind="ssh-key",
        secret=key.export_private_key().decode(),
        username="mssp",
        public_key=public,
    )
    return public


async def core_key(vault: Vault) -> asyncssh.SSHKey:
    row = await Credential.get_or_none(client_id=None, name=CORE_KEY_NAME)
    if row is None:
        raise NotFoundError("no relay core key: run `mssp relay init` first")
    return asyncssh.import_private_key((await get_secret(vault, row.id)).reveal())


async def set_endpoint(vault: Vault, url: str, pin: str) -> Endpoint:
    """Record the relay (validated URL and pin) and make sure the core has its key."""
    from relay import tls
    from relay import token as join_token
    from relay.errors import RelayError

    try:
        url = join_token.validate_relay_url(url)
        pin = tls.validate_pin(pin)
    except RelayError as exc:
        raise UsageError(str(exc)) from None
    public = await ensure_core_key(vault)
    cred = await Credential.get(client_id=None, name=CORE_KEY_NAME)
    async with write_transaction():
        row = await RelayEndpoint.first()
        if row is None:
            await RelayEndpoint.create(url=url, pin=pin, core_credential_id=cred.id)
        else:
            await RelayEndpoint.filter(id=row.id).update(
                url=url, pin=pin, core_credential_id=cred.id
            )
    return Endpoint(url, pin, public)


# ---- sites -----------------------------------------------------------------------------------
async def _site_row(full_name: str) -> tuple[Site, str, str]:
    client_slug, site_slug = split_full_name(full_name, 2)
    site = await Site.get_or_none(client__slug=client_slug, slug=site_slug)
    if site is None:
        raise NotFoundError(f"no site {client_slug}/{site_slug}")
    return site, client_slug, site_slug


async def agent_for(client_slug: str, site_slug: str) -> AgentRecord | None:
    row = await SiteAgent.get_or_none(site__client__slug=client_slug, site__slug=site_slug)
    return None if row is None else _record(row, client_slug, site_slug)


async def list_agents() -> list[AgentRecord]:
    rows = await SiteAgent.all().prefetch_related("site__client")
    records = [_record(r, r.site.client.slug, r.site.slug) for r in rows]
    return sorted(records, key=lambda r: r.full_name)


def new_relay_site_id() -> str:
    """An opaque id for the relay: it never learns client or site names."""
    return "s" + secrets.token_hex(12)


async def prepare_enrolment(full_name: str) -> tuple[str, str, str]:
    """Check the site exists; its (client, site, relay id to use): kept across re-enrolments."""
    site, client_slug, site_slug = await _site_row(full_name)
    row = await SiteAgent.get_or_none(site_id=site.id)
    return client_slug, site_slug, row.relay_site_id if row else new_relay_site_id()


async def save_enrolment(
    vault: Vault, full_name: str, relay_site_id: str, binding_secret: bytes, expires_at: float
) -> AgentRecord:
    """Store a new enrolment (after the relay accepted the token): forget any old agent key."""
    site, client_slug, site_slug = await _site_row(full_name)
    cred_name = f"relay-bind-{site_slug}"[:64].rstrip("-")
    now = datetime.now(UTC)
    async with write_transaction():
        existing = await Credential.get_or_none(client__slug=client_slug, name=cred_name)
        if existing is None:
            cred_id = await add_credential(
                vault, client_slug=client_slug, name=cred_name, kind="token", secret=binding_secret
            )
        else:
            cred_id = await replace_secret(vault, f"{client_slug}/{cred_name}", binding_secret)
        fields = {
            "relay_site_id": relay_site_id,
            "binding_credential_id": cred_id,
            "agent_key": "",
            "token_issued_at": now,
            "token_expires_at": _when(expires_at),
            "joined_at": None,
            "revoked_at": None,
            "online": False,
            "online_since": None,
            "last_seen": None,
            "rtt_ms": None,
            "presence_at": None,
        }
        row = await SiteAgent.get_or_none(site_id=site.id)
        if row is None:
            row = await SiteAgent.create(site_id=site.id, **fields)
        else:
            await SiteAgent.filter(id=row.id).update(**fields)
            row = await SiteAgent.get(id=row.id)
    return _record(row, client_slug, site_slug)


async def binding_secret(vault: Vault, record: AgentRecord) -> bytes:
    if record.binding_credential_id is None:
        raise RelayProtocolError(
            f"site {record.full_name}: its binding secret is gone from the vault; enrol again"
        )
    return (await get_secret(vault, record.binding_credential_id)).reveal_bytes()


async def pin_agent_key(relay_site_id: str, key: str, joined_at: float | None) -> None:
    await SiteAgent.filter(relay_site_id=relay_site_id, agent_key="").update(
        agent_key=key, joined_at=_when(joined_at) or datetime.now(UTC)
    )


async def mark_revoked(full_name: str) -> AgentRecord:
    site, client_slug, site_slug = await _site_row(full_name)
    row = await SiteAgent.get_or_none(site_id=site.id)
    if row is None:
        raise NotFoundError(f"site {full_name} has no enrolled agent")
    await SiteAgent.filter(id=row.id).update(revoked_at=datetime.now(UTC), online=False)
    return _record(await SiteAgent.get(id=row.id), client_slug, site_slug)


async def record_presence(
    relay_site_id: str,
    *,
    online: bool,
    since: float | None,
    last_seen: float | None,
    rtt_ms: float | None,
) -> AgentRecord | None:
    """Store one presence observation; the site's record, or None for a site we do not know."""
    row = await SiteAgent.get_or_none(relay_site_id=relay_site_id).prefetch_related("site__client")
    if row is None:
        return None
    await SiteAgent.filter(id=row.id).update(
        online=online,
        online_since=_when(since),
        last_seen=_when(last_seen),
        rtt_ms=rtt_ms,
        presence_at=datetime.now(UTC),
    )
    row = await SiteAgent.get(id=row.id).prefetch_related("site__client")
    return _record(row, row.site.client.slug, row.site.slug)
