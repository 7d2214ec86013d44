"""The latest facts of each host (one Fact row per host), saved after a facts run, read by views.

The facts task returns its data in ``TaskResult.data["facts"]``; the engine calls
``save_facts(host, data)`` for each host where that task succeeded (tasks never touch the
database). The host's ``os_family`` column follows the facts, so selections and views can use it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mssp.db import to_completion
from mssp.errors import NotFoundError, UsageError
from mssp.inventory import HostRecord
from mssp.models.inventory import Fact, Host
from mssp.store import write_transaction

MAX_FACTS_BYTES = 1024 * 1024
"""A facts document larger than this is refused (a host could otherwise fill the database)."""


@dataclass(frozen=True)
class HostFacts:
    """The facts last gathered from one host."""

    host_id: int
    data: Mapping[str, Any]
    collected_at: datetime


async def _host_row(host: HostRecord | int) -> Host:
    if isinstance(host, int):
        row = await Host.get_or_none(id=host)
        name = f"id {host}"
    elif host.id is not None:
        row = await Host.get_or_none(id=host.id)
        name = host.full_name
    else:
        row = await Host.get_or_none(
            site__client__slug=host.client, site__slug=host.site, name=host.name
        )
        name = host.full_name
    if row is None:
        raise NotFoundError(f"no host {name}")
    return row


def _checked(data: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise UsageError("facts must be a JSON object")
    try:
        size = len(json.dumps(data))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"facts are not JSON-serialisable: {exc}") from None
    if size > MAX_FACTS_BYTES:
        raise UsageError(f"facts document too large ({size} bytes > {MAX_FACTS_BYTES})")
    return dict(data)


async def save_facts(host: HostRecord | int, data: Mapping[str, Any]) -> None:
    """Replace the host's facts with `data` and record its OS family (to completion: a run's host
    task saves them, and a cancel must not stop its transaction halfway, see db.to_completion)."""
    await to_completion(_save(host, _checked(data)))


async def _save(host: HostRecord | int, document: dict[str, Any]) -> None:
    async with write_transaction():
        row = await _host_row(host)
        existing = await Fact.filter(host_id=row.id).order_by("-id").first()
        if existing is None:
            await Fact.create(host_id=row.id, data=document)
        else:
            existing.data = document
            await existing.save()
            # Older duplicates (none are created here) would make "latest" ambiguous.
            await Fact.filter(host_id=row.id).exclude(id=existing.id).delete()
        family = str((document.get("os") or {}).get("family", ""))[:32]
        if family and family != row.os_family:
            row.os_family = family
            await row.save(update_fields=["os_family"])


async def load_facts(host: HostRecord | int) -> HostFacts | None:
    """The host's latest facts, or None if never gathered."""
    row = await _host_row(host)
    fact = await Fact.filter(host_id=row.id).order_by("-id").first()
    if fact is None:
        return None
    return HostFacts(row.id, fact.data, fact.collected_at)


async def facts_for(host_ids: Iterable[int]) -> dict[int, HostFacts]:
    """Latest facts of many hosts at once (for a fleet table); hosts without facts are absent."""
    ids = list(host_ids)
    if not ids:
        return {}
    result: dict[int, HostFacts] = {}
    for fact in await Fact.filter(host_id__in=ids).order_by("id"):
        result[fact.host_id] = HostFacts(fact.host_id, fact.data, fact.collected_at)  # type: ignore[attr-defined]
    return result


async def forget_facts(host: HostRecord | int) -> int:
    """Delete a host's facts; how many rows went."""
    row = await _host_row(host)
    async with write_transaction():
        return await Fact.filter(host_id=row.id).delete()
