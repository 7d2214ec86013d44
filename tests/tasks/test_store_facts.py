"""The latest facts of each host in the database (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mssp.config import Settings
from mssp.errors import NotFoundError, UsageError
from mssp.inventory import HostRecord
from mssp.models.inventory import Fact, Host
from mssp.store import inventory as inv
from mssp.store.facts import MAX_FACTS_BYTES, facts_for, forget_facts, load_facts, save_facts
from mssp.tasks.facts import parse_linux_facts

FIXTURES = Path(__file__).with_name("fixtures")


async def _host() -> HostRecord:
    await inv.create_client("acme-dental", "Acme Dental")
    await inv.create_site("acme-dental", "hq", "HQ")
    return await inv.create_host("acme-dental", "hq", "files01", address="10.0.0.5")


async def test_facts_are_saved_replaced_and_loaded(db: Settings) -> None:
    host = await _host()
    assert await load_facts(host) is None
    first = parse_linux_facts((FIXTURES / "facts/debian12.txt").read_text())
    await save_facts(host, first)
    loaded = await load_facts(host)
    assert loaded is not None and loaded.data["os"]["pretty_name"] == first["os"]["pretty_name"]
    second = parse_linux_facts((FIXTURES / "facts/rocky9.txt").read_text())
    await save_facts(host.id or 0, second)
    assert await Fact.filter(host_id=host.id).count() == 1
    latest = await load_facts(host)
    assert latest is not None and latest.data["os"]["id"] == "rocky"
    assert (await Host.get(id=host.id)).os_family == "redhat"
    assert set(await facts_for([host.id or 0, 999])) == {host.id}
    assert await forget_facts(host) == 1 and await load_facts(host) is None


async def test_facts_of_an_unknown_host_or_bad_documents_are_refused(db: Settings) -> None:
    host = await _host()
    with pytest.raises(NotFoundError):
        await save_facts(HostRecord("acme-dental", "hq", "nope", "x"), {"os": {}})
    with pytest.raises(UsageError, match="too large"):
        await save_facts(host, {"blob": "x" * (MAX_FACTS_BYTES + 1)})
    with pytest.raises(UsageError, match="JSON"):
        await save_facts(host, {"bad": object()})
    assert await load_facts(host) is None
