"""Write an import plan to the database: all of it in one transaction, or nothing.

``preview`` reads the database and returns the plan; ``apply_plan`` opens a transaction, reads
the database again, and refuses (InventoryError, nothing written) if that no longer gives the
plan that was previewed, so what the user saw is exactly what is written. Any error inside the
transaction rolls everything back. The transaction takes SQLite's write lock up front
(``mssp.db.write_transaction``), so a dashboard or daemon writing at the same time waits for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mssp import audit
from mssp.db import write_transaction
from mssp.errors import DatabaseError, InventoryError, MsspError
from mssp.importers.plan import (
    ExistingHost,
    ExistingInventory,
    ImportPlan,
    ParsedInventory,
    make_plan,
    merged_fields,
)
from mssp.models.inventory import Client, Host, Site


@dataclass(frozen=True)
class ApplyResult:
    """What was written."""

    plan: ImportPlan
    created: int
    updated: int
    unchanged: int
    left: int
    """Hosts in the touched sites that the file does not mention (never deleted)."""


def tags_to_db(tags: Iterable[str]) -> str:
    return ",".join(sorted({t.lower() for t in tags}))


def tags_from_db(text: str) -> frozenset[str]:
    return frozenset(t for t in text.split(",") if t)


async def load_existing(client_slugs: Iterable[str], connection: Any = None) -> ExistingInventory:
    """The part of the database an import of these clients can touch."""
    slugs = sorted(set(client_slugs))
    clients = (
        await Client.filter(slug__in=slugs).using_db(connection).values_list("slug", flat=True)
    )
    sites = (
        await Site.filter(client__slug__in=slugs)
        .using_db(connection)
        .values("slug", "client__slug")
    )
    rows = (
        await Host.filter(site__client__slug__in=slugs)
        .using_db(connection)
        .values(
            "name",
            "address",
            "port",
            "username",
            "transport",
            "tags",
            "options",
            "site__slug",
            "site__client__slug",
        )
    )
    hosts = {
        f"{r['site__client__slug']}/{r['site__slug']}/{r['name']}": ExistingHost(
            address=r["address"],
            port=r["port"],
            username=r["username"],
            transport=r["transport"],
            tags=tags_from_db(r["tags"]),
            options=r["options"] or {},
        )
        for r in rows
    }
    return ExistingInventory(
        clients=frozenset(clients),
        sites=frozenset(f"{s['client__slug']}/{s['slug']}" for s in sites),
        hosts=hosts,
    )


async def preview(parsed: ParsedInventory) -> ImportPlan:
    """The plan against the database as it is now (reads only)."""
    existing = await load_existing(h.client for h in parsed.hosts)
    return make_plan(parsed, existing)


def _signature(plan: ImportPlan) -> list[tuple[str, str, str, tuple[Any, ...]]]:
    return [
        (c.action, c.kind, c.name, tuple((f.field, repr(f.old), repr(f.new)) for f in c.changes))
        for c in plan.changes
    ]


async def apply_plan(plan: ImportPlan) -> ApplyResult:
    """Write ``plan`` in one transaction; nothing is written if anything fails."""
    parsed = plan.parsed
    try:
        async with write_transaction() as conn:
            existing = await load_existing((h.client for h in parsed.hosts), conn)
            if _signature(make_plan(parsed, existing)) != _signature(plan):
                raise InventoryError(
                    "the database changed since the preview; nothing was imported: run the "
                    "import again to see the new preview",
                    path=parsed.path,
                )
            await _write(plan, existing, conn)
            await _audit(plan)  # in the same transaction: both or neither
    except MsspError:
        raise
    except Exception as exc:  # driver errors: nothing was committed
        raise DatabaseError(
            f"import of {parsed.path} failed, nothing was imported: {type(exc).__name__}: {exc}"
        ) from None
    return ApplyResult(
        plan=plan,
        created=plan.count("create"),
        updated=plan.count("update"),
        unchanged=plan.count("unchanged"),
        left=plan.count("left"),
    )


MAX_AUDITED_NAMES = 200
"""Host names listed per change kind in an import's audit entry; beyond that only counts."""


async def _audit(plan: ImportPlan) -> None:
    """One ``inventory.import`` entry per client the import writes to (AuditError refuses the
    whole import). Names and counts only: an inventory file may hold secrets, its fields never
    go to the log."""
    parsed = plan.parsed
    per_client: dict[str, dict[str, dict[str, list[str]]]] = {}
    for change in plan.changes:
        if change.action not in ("create", "update"):
            continue
        client = change.name.split("/", 1)[0]
        by_action = per_client.setdefault(client, {})
        by_action.setdefault(change.action + "d", {}).setdefault(change.kind, []).append(
            change.name
        )
    for client, by_action in sorted(per_client.items()):
        detail: dict[str, Any] = {"format": parsed.format, "rule": parsed.rule}
        for action, kinds in sorted(by_action.items()):
            detail[action] = {k: sorted(v)[:MAX_AUDITED_NAMES] for k, v in sorted(kinds.items())}
            detail[f"{action}_count"] = {k: len(v) for k, v in sorted(kinds.items())}
        await audit.record("inventory.import", client=client, target=parsed.path, detail=detail)


async def _write(plan: ImportPlan, existing: ExistingInventory, conn: Any) -> None:
    clients: dict[str, Client] = {}
    sites: dict[str, Site] = {}
    for change in plan.changes:
        if change.kind == "client":
            if change.action == "create":
                clients[change.name] = await Client.create(
                    slug=change.name, name=(change.display_name or change.name)[:200], using_db=conn
                )
            else:
                clients[change.name] = await Client.get(slug=change.name).using_db(conn)
        elif change.kind == "site":
            client_slug, site_slug = change.name.split("/", 1)
            if change.action == "create":
                sites[change.name] = await Site.create(
                    client=clients[client_slug],
                    slug=site_slug,
                    name=(change.display_name or site_slug)[:200],
                    using_db=conn,
                )
            else:
                sites[change.name] = await Site.get(
                    client=clients[client_slug], slug=site_slug
                ).using_db(conn)
    for change in plan.changes:
        host = change.host
        if change.kind != "host" or host is None or change.action not in ("create", "update"):
            continue
        site = sites[f"{host.client}/{host.site}"]
        if change.action == "create":
            await Host.create(
                site=site,
                name=host.name,
                address=host.address,
                port=host.port,
                username=host.username,
                transport=host.transport,
                tags=tags_to_db(host.tags),
                options=dict(host.options),
                using_db=conn,
            )
            continue
        fields = merged_fields(existing.hosts[host.full_name], host)
        fields["tags"] = tags_to_db(fields["tags"])
        await Host.filter(site=site, name=host.name).using_db(conn).update(**fields)
